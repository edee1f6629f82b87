"""What the sagemaker-training toolkit runs for `train` (SAGEMAKER_PROGRAM=train_entry.py).

The toolkit also passes every hyperparameter as `--name value`; the job reads them from
hyperparameters.json through the package instead, so there is one parser and one schema.
"""

import shutil
import sys
from pathlib import Path

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.environment import SageMakerEnvironment

PACKAGE_DIR = Path({{ cookiecutter.package_name }}.__file__).resolve().parent
INFERENCE_HANDLERS = Path(__file__).resolve().with_name("inference.py")


def package_inference_code(model_dir: Path) -> None:
    """Copy the serving code into the model artifact's code/, where AWS's inference images look for it."""
    code_dir = model_dir / "code"
    shutil.rmtree(code_dir, ignore_errors=True)
    shutil.copytree(PACKAGE_DIR, code_dir / PACKAGE_DIR.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(INFERENCE_HANDLERS, code_dir / "inference.py")


if __name__ == "__main__":
    exit_code = main(["train"])
    env = SageMakerEnvironment.from_environ()
    # On a job with several hosts, the master alone writes the model, so it alone gets the code beside it.
    if exit_code == 0 and INFERENCE_HANDLERS.exists() and env.cluster().is_master:
        package_inference_code(env.model_dir)
    sys.exit(exit_code)
