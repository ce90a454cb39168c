"""The Predict page; its logic is in mloop.ui.predict."""

from mloop.ui import predict

predict.page()
