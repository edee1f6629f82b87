"""The `sm_drivers` channel the SageMaker SDK uploads for `ModelTrainer(source_code=SourceCode(command=...))`.

Run by `.venv-notebook`'s Python (the SDK cannot share the main environment): `python sdk_source_code.py DIR COMMAND`
lays the channel out in DIR with the SDK's own code, the steps `ModelTrainer._create_training_job_args` takes
before uploading it, and prints the container entrypoint and arguments the SDK puts in CreateTrainingJob, as JSON.
tests/test_images.py runs a built image with them, so the image starts the way a job launched with
`use_local_code` starts it. The private methods are called on a stand-in for the trainer (they read only its
hyperparameters and JumpStart settings); a new SDK that changes them fails here, not silently.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from types import SimpleNamespace

import sagemaker.core.utils.install_requirements as install_requirements
from sagemaker.core.training.configs import SourceCode
from sagemaker.train import constants
from sagemaker.train.model_trainer import ModelTrainer


def main(target: str, command: str) -> None:
    shutil.copytree(constants.SM_DRIVERS_LOCAL_PATH, target, dirs_exist_ok=True)
    shutil.copy2(install_requirements.__file__, os.path.join(target, "scripts", "install_requirements.py"))
    # Hyperparameters set: the notebook sets them, and with a command the SDK only warns about them.
    trainer = SimpleNamespace(hyperparameters={"set": "by the notebook"}, _jumpstart_config=None)
    holder = SimpleNamespace(name=target)  # what the SDK passes: a TemporaryDirectory, of which it reads .name
    source_code = SourceCode(source_dir="code", command=command)  # a folder: the channel is /opt/ml/input/data/code
    ModelTrainer._prepare_train_script(trainer, tmp_dir=holder, source_code=source_code, distributed=None)
    ModelTrainer._write_source_code_json(trainer, tmp_dir=holder, source_code=source_code)
    ModelTrainer._write_distributed_json(trainer, tmp_dir=holder, distributed=None)
    start = {"entrypoint": constants.DEFAULT_CONTAINER_ENTRYPOINT, "arguments": constants.DEFAULT_CONTAINER_ARGUMENTS}
    print(json.dumps(start))


if __name__ == "__main__":
    main(*sys.argv[1:3])
