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
# What AWS's inference image never runs: the command line, the HTTP server, the training job and the
# sample data{% if cookiecutter.framework == "tensorflow" %}, and, since TensorFlow Serving runs the SavedModel itself, the model and its framework
# code (the handlers only parse and encode bodies against the schema){% else %} (metrics.py goes along: framework.py imports its progress lines){% endif %}. Everything else in the package goes into
# the artifact, modules you add included.
LEFT_OUT = (
    "__main__.py",
    "_runtime/channels.py",
    "_runtime/custom_attributes.py",
    "_runtime/http_connection.py",
    "_runtime/sample_tree.py",
    "_runtime/server.py",
    "_runtime/server_settings.py",
    "_runtime/training.py",
{%- if cookiecutter.framework == "tensorflow" %}
    "_runtime/batches.py",
    "_runtime/checkpoints.py",
    "_runtime/distributed.py",
    "_runtime/framework.py",
    "_runtime/inference.py",
    "_runtime/metrics.py",
    "_runtime/network.py",
    "model.py",
{%- endif %}
)


def package_inference_code(model_dir: Path) -> None:
    """Copy the serving code into the model artifact's code/, where AWS's inference images look for it."""
    code_dir = model_dir / "code"
    shutil.rmtree(code_dir, ignore_errors=True)
    for source in sorted(PACKAGE_DIR.rglob("*.py")):
        module = source.relative_to(PACKAGE_DIR).as_posix()
        if module not in LEFT_OUT:
            target = code_dir / PACKAGE_DIR.name / module
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
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
