"""Model serving: the Open Inference (KServe V2) protocol and plain JSON. ``dataplane`` predicts without HTTP;
``asgi`` is the raw ASGI app over it (one route table); ``server`` builds and starts them."""
