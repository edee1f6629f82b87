"""Unit tests of the hooks' functions, imported from the hook files themselves."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import DEFAULTS, TEMPLATE_DIR


def load_hook(name: str):
    spec = importlib.util.spec_from_file_location(name, TEMPLATE_DIR / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pre_gen = load_hook("pre_gen_project")
post_gen = load_hook("post_gen_project")


def answers(**overrides: str) -> dict[str, str]:
    values = {key: value[0] if isinstance(value, list) else value for key, value in DEFAULTS.items()}
    values.update(
        project_slug="iris-classifier",
        package_name="iris_classifier",
        ecr_repository="iris-classifier",
        training_instance_type="ml.m5.large",
        inference_instance_type="ml.m5.large",
    )
    values.update(overrides)
    return values


def test_defaults_are_valid():
    assert pre_gen.validate(answers()) == []


def test_choices_in_hook_match_cookiecutter_json():
    for field, allowed in pre_gen.CHOICES.items():
        assert tuple(DEFAULTS[field]) == allowed, field


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("project_slug", "Iris Classifier", "project_slug 'Iris Classifier' is not allowed"),
        ("project_slug", "iris--classifier", "single hyphens"),
        ("project_slug", "9lives", "starting with a letter"),
        ("package_name", "iris-classifier", "not a valid Python package name"),
        ("package_name", "class", "is a Python keyword"),
        ("package_name", "json", "would shadow the module"),
        ("package_name", "sagemaker", "would shadow the module"),
        ("aws_region", "us-east", "not an AWS region name"),
        ("aws_region", "US-EAST-1", "not an AWS region name"),
        ("ecr_repository", "Iris", "breaks ECR's naming rules"),
        ("ecr_repository", "a", "breaks ECR's naming rules"),
        ("ecr_repository", "team//iris", "breaks ECR's naming rules"),
        ("training_instance_type", "m5.large", "not a SageMaker instance type"),
        ("inference_instance_type", "ml.m5.large; rm -rf /", "not a SageMaker instance type"),
        ("training_instance_type", "ml.g5.xlarge", "is a GPU type but processor is 'cpu'"),
        ("author_email", "nobody", "is not an e-mail address"),
        ("project_name", "", "project_name must not be empty"),
        ("project_name", "x" * 81, "at most 80 are allowed"),
        ("description", "two\nlines", "single line"),
        ("description", "{{ cookiecutter.project_slug }}", "must not contain template syntax"),
        ("framework", "jax", "framework 'jax' is not one of: sklearn, pytorch, tensorflow"),
        ("scope", "serve-only", "scope 'serve-only' is not one of"),
    ],
)
def test_each_rule_names_the_field_and_what_is_allowed(field, value, message):
    problems = pre_gen.validate(answers(**{field: value}))
    assert any(message in problem for problem in problems), problems


def test_valid_unusual_values_pass():
    assert pre_gen.validate(answers(ecr_repository="team/iris.classifier_v2", aws_region="us-gov-west-1")) == []
    assert pre_gen.validate(answers(project_name="Ïris « classifier » 'v2' \\ \"quoted\"")) == []


def test_gpu_instance_needed_for_gpu_processor():
    problems = pre_gen.validate(answers(framework="pytorch", processor="gpu", training_instance_type="ml.m5.large"))
    assert any("has no GPU but processor is 'gpu'" in problem for problem in problems)


def test_main_prints_every_problem_and_fails(capsys):
    assert pre_gen.main(answers(aws_region="mars", project_slug="A")) == 1
    err = capsys.readouterr().err
    assert "ERROR: aws_region 'mars'" in err
    assert "ERROR: project_slug 'A'" in err
    assert "Nothing was generated" in err


def test_overlay_moves_a_tree_and_keeps_the_rest(tmp_path):
    (tmp_path / "_variant" / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "_variant" / "src" / "pkg" / "model.py").write_text("chosen")
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "train.py").write_text("shared")
    post_gen.overlay(tmp_path / "_variant", tmp_path)
    assert (tmp_path / "src" / "pkg" / "model.py").read_text() == "chosen"
    assert (tmp_path / "src" / "pkg" / "train.py").read_text() == "shared"


def test_next_steps_follow_the_scope():
    assert "make local-serve" in post_gen.next_steps(answers())
    assert "make local-serve" not in post_gen.next_steps(answers(scope="train-only"))


def test_hook_answers_are_read_as_json_data():
    for name in ("pre_gen_project", "post_gen_project"):
        source = (TEMPLATE_DIR / "hooks" / f"{name}.py").read_text()
        assert "json.loads(r'''{{ cookiecutter | tojson }}''')" in source
        body = source.replace("{{ cookiecutter | tojson }}", "")
        assert "{{" not in body.replace('"{{"', ""), f"{name} pastes an answer into its source"


def test_jinja_tojson_cannot_close_the_raw_string():
    # tojson escapes quotes and backslashes, so no answer can end the r'''...''' literal early.
    from jinja2 import Environment

    hostile = {"project_name": "'''); import os; os.system('echo pwned') #\\"}
    rendered = Environment().from_string("r'''{{ data | tojson }}'''").render(data=hostile)
    assert json.loads(eval(rendered)) == hostile  # evaluating the literal is the point of the test


def test_post_gen_leaves_no_variant_folders(tmp_path):
    project = tmp_path / "p"
    shutil.copytree(TEMPLATE_DIR / "{{cookiecutter.project_slug}}", project)
    post_gen.main(project, answers())
    assert not [path for path in project.iterdir() if path.name.startswith("_")]
    assert (project / "LICENSE").exists()


def test_post_gen_removes_ci_files_when_none_chosen(tmp_path):
    project = tmp_path / "p"
    shutil.copytree(TEMPLATE_DIR / "{{cookiecutter.project_slug}}", project)
    post_gen.main(project, answers(ci="none"))
    assert not (project / ".github").exists()


def test_combination_folders_apply_when_every_condition_holds_most_specific_last(tmp_path):
    for name in ("base_image=extend-prebuilt,framework=tensorflow", "base_image=extend-prebuilt", "framework=pytorch"):
        (tmp_path / name).mkdir()
    chosen = post_gen.matching_combinations(tmp_path, answers(framework="tensorflow", base_image="extend-prebuilt"))
    assert [path.name for path in chosen] == [
        "base_image=extend-prebuilt",
        "base_image=extend-prebuilt,framework=tensorflow",
    ]
    assert post_gen.matching_combinations(tmp_path, answers()) == []


def git_repository(path, *files: str):
    """A git repository at path with files (relative paths) committed; returns (path, HEAD commit)."""
    environ = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": os.environ["PATH"]}
    identity = ["-c", "user.name=Tests", "-c", "user.email=tests@example.com"]
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("{}\n")
    for command in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "A"]):
        subprocess.run(["git", *command], cwd=path, env=environ, check=True, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, env=environ, check=True, capture_output=True)
    return path, head.stdout.decode().strip()


def cookiecutter_answers(template: str, repo_dir: str, **run_keys: str) -> dict[str, str]:
    """The answers as plain cookiecutter hands them to the hooks, with its per-run keys."""
    return answers(_template=template, _repo_dir=repo_dir, _output_dir="/somewhere", _checkout=None, **run_keys)


def test_plain_cookiecutter_from_a_git_checkout_records_its_path_and_commit(tmp_path):
    template, commit = git_repository(tmp_path / "template", "cookiecutter.json")
    (tmp_path / "project").mkdir()
    note = post_gen.record_template(tmp_path / "project", cookiecutter_answers(str(template), str(template)), {})
    assert note is None
    state = json.loads((tmp_path / "project" / ".cruft.json").read_text())
    assert (state["template"], state["commit"], state["checkout"], state["directory"]) == (
        str(template),
        commit,
        None,
        None,
    )
    recorded = state["context"]["cookiecutter"]
    assert (recorded["_template"], recorded["_commit"]) == (str(template), commit)
    assert not {"_output_dir", "_repo_dir", "_checkout"} & set(recorded), "per-run keys cruft does not record"
    assert {key: recorded[key] for key in answers()} == answers()


def test_a_template_in_a_sub_folder_of_its_repository_records_the_folder(tmp_path):
    top, commit = git_repository(tmp_path / "repo", "templates/byoc/cookiecutter.json")
    revision = post_gen.template_revision(top / "templates" / "byoc")
    assert (revision["top"], revision["commit"], revision["directory"]) == (str(top), commit, "templates/byoc")


def test_a_cloned_template_records_the_url_it_was_cloned_from():
    revision = {"top": "/home/me/.cookiecutters/byoc-template", "origin": "https://example.com/team/byoc-template.git"}
    cloned = answers(_template="gh:team/byoc-template", _repo_dir="/home/me/.cookiecutters/byoc-template")
    local = answers(_template="../byoc-template", _repo_dir="../byoc-template")
    assert post_gen.template_source(cloned, revision) == "https://example.com/team/byoc-template.git"
    assert post_gen.template_source(local, revision | {"top": "/home/me/byoc-template"}) == "/home/me/byoc-template"


def test_a_relative_template_path_is_found_from_the_folder_cookiecutter_ran_in(tmp_path):
    (tmp_path / "byoc-template").mkdir()
    (tmp_path / "byoc-template" / "cookiecutter.json").write_text("{}")
    (tmp_path / "work").mkdir()
    relative = answers(_repo_dir="../byoc-template", _output_dir="/elsewhere")
    assert post_gen.locate_template_dir(relative, {"PWD": str(tmp_path / "work")}) == tmp_path / "byoc-template"
    assert post_gen.locate_template_dir(relative, {"PWD": "/nowhere"}) is None
    assert post_gen.locate_template_dir(answers(_repo_dir="/abs/template"), {}) == Path("/abs/template")


def test_no_cruft_json_without_a_template_commit_and_the_note_points_to_linking(tmp_path):
    (tmp_path / "template").mkdir()
    (tmp_path / "template" / "cookiecutter.json").write_text("{}")
    (tmp_path / "project").mkdir()
    given = cookiecutter_answers(str(tmp_path / "template"), str(tmp_path / "template"))
    note = post_gen.record_template(tmp_path / "project", given, {})
    assert not (tmp_path / "project" / ".cruft.json").exists(), "cruft would read a missing commit as up to date"
    assert "Update from the template" in note


def test_a_render_by_cruft_leaves_cruft_json_to_cruft(tmp_path):
    template, commit = git_repository(tmp_path / "template", "cookiecutter.json")
    (tmp_path / "project").mkdir()
    by_cruft = answers(_template=str(template), _commit=commit)
    assert post_gen.record_template(tmp_path / "project", by_cruft, {}) is None
    assert not (tmp_path / "project" / ".cruft.json").exists()


def test_a_template_with_uncommitted_changes_is_recorded_with_a_warning(tmp_path):
    template, commit = git_repository(tmp_path / "template", "cookiecutter.json")
    (template / "cookiecutter.json").write_text('{"changed": true}\n')
    (tmp_path / "project").mkdir()
    note = post_gen.record_template(tmp_path / "project", cookiecutter_answers(str(template), str(template)), {})
    assert json.loads((tmp_path / "project" / ".cruft.json").read_text())["commit"] == commit
    assert "uncommitted changes" in note
