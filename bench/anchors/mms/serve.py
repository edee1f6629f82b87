"""Start MMS the way the toolkit's images do: sagemaker_inference.model_server.start_model_server.

The port, worker count and model folder come from the toolkit's own variables
(SAGEMAKER_BIND_TO_PORT, SAGEMAKER_MODEL_SERVER_WORKERS, SAGEMAKER_BASE_DIR). The one change:
the toolkit writes its MMS configuration to /etc/sagemaker-mms.properties; here it goes to
MMS_CONFIG_FILE, so that a bench run needs no root and leaves /etc alone. On SIGTERM the toolkit
stops MMS and returns, so this exits 0.
"""

import os

from sagemaker_inference import model_server

model_server.MMS_CONFIG_FILE = os.environ["MMS_CONFIG_FILE"]
model_server.start_model_server(handler_service="handler_service")
