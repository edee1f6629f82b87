"""What the sagemaker-training toolkit runs for `train` (SAGEMAKER_PROGRAM=train_entry.py).

The toolkit also passes every hyperparameter as `--name value`; the job reads them from
hyperparameters.json through the package instead, so there is one parser and one schema.
"""

{% if cookiecutter.scope == "train+serve" %}import shutil
{% endif %}import sys
{%- if cookiecutter.scope == "train+serve" %}
from pathlib import Path
{%- endif %}

{% if cookiecutter.scope == "train+serve" %}import {{ cookiecutter.package_name }}
{% endif %}from {{ cookiecutter.package_name }}.__main__ import main
{%- if cookiecutter.scope == "train+serve" %}
from {{ cookiecutter.package_name }}._runtime.environment import SageMakerEnvironment

PACKAGE_DIR = Path({{ cookiecutter.package_name }}.__file__).resolve().parent
INFERENCE_HANDLERS = Path(__file__).resolve().with_name("inference.py")
# What AWS's inference image imports from the package, and nothing else: not the HTTP server, the
# training job or the sample data{% if cookiecutter.framework == "tensorflow" %}; TensorFlow Serving runs the SavedModel itself, so the handlers
# only parse and encode bodies against the schema{% endif %}.
SERVING_MODULES = (
    "__init__.py",
    "_runtime/__init__.py",
    "_runtime/contract.py",
    "_runtime/environment.py",
    "_runtime/hyperparameters.py",
    "_runtime/tables.py",
    "_runtime/payloads.py",
{%- if cookiecutter.framework != "tensorflow" %}
    "_runtime/inference.py",
    "_runtime/framework.py",
{%- if cookiecutter.framework == "pytorch" %}
    "_runtime/distributed.py",
{%- endif %}
    "model.py",
{%- endif %}
)


def package_inference_code(model_dir: Path) -> None:
    """Copy the serving code into the model artifact's code/, where AWS's inference images look for it."""
    code_dir = model_dir / "code"
    shutil.rmtree(code_dir, ignore_errors=True)
    for module in SERVING_MODULES:
        target = code_dir / PACKAGE_DIR.name / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE_DIR / module, target)
    shutil.copy2(INFERENCE_HANDLERS, code_dir / "inference.py")
{% endif %}

if __name__ == "__main__":
    exit_code = main(["train"])
{%- if cookiecutter.scope == "train+serve" %}
    env = SageMakerEnvironment.from_environ()
    # On a job with several hosts, the master alone writes the model, so it alone gets the code beside it.
    if exit_code == 0 and env.cluster().is_master:
        package_inference_code(env.model_dir)
{%- endif %}
    sys.exit(exit_code)
