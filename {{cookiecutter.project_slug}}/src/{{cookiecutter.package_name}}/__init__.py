"""{{ cookiecutter.project_slug }}: a SageMaker bring-your-own-container project."""
