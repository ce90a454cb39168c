"""Model serving: the Open Inference (KServe V2) protocol and plain JSON over a raw ASGI app."""
