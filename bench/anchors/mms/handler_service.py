"""The handler service MMS loads, as the toolkit's custom-container guide builds one.

MMS instantiates the one class defined here; the Transformer finds the user module
(`inference`, on PYTHONPATH) and calls its model_fn once, then input_fn -> predict_fn ->
output_fn per request.
"""

from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.transformer import Transformer


class HandlerService(DefaultHandlerService):
    def __init__(self):
        super().__init__(transformer=Transformer())
