"""IPython startup file for the notebook's kernel under test: everything the emulator needs, and a guard.

tests/test_notebook.py copies this into the kernel's IPYTHONDIR, so it runs before the notebook's first
cell and the notebook itself stays exactly what a user runs against AWS. It reads its settings from the
environment the test gives the kernel:

- BYOC_TEST_NETWORK_LOG: file that records any attempt to reach a host other than the loopback one; the
  attempt is refused, and the test asserts the file stays empty.
- BYOC_TEST_FALLBACK_PATH: site-packages appended after the kernel's own, for framework packages that
  only the template's main environment holds.
- BYOC_TEST_FAIL_OPERATION: an operation made to fail, as <service>.<Operation>
  (sagemaker-runtime.InvokeEndpoint, sagemaker.CreateTransformJob), to prove the notebook still cleans up.
- BYOC_TEST_MODEL_ARTIFACT: a model.tar.gz written where a completed training job's artifact is (moto names
  the artifact and writes none; see _emulate_model_artifact).
- BYOC_TEST_TRANSFORM_ANSWERS: a JSON list of answer lines a transform job writes, one per input record
  (see _emulate_transform_output).
- BYOC_TEST_JOB_LOG: a JSON list of lines each host of a training job writes to CloudWatch Logs, as SageMaker's
  agent does while the job runs (see _emulate_job_log).
"""


def _emulate_job_log(lines: list[str]) -> dict:
    """botocore handlers that make a training job run for a while and write its log as it goes, as on AWS.

    moto completes a job at once and writes no log. Here a job stays InProgress until its log was looked at
    (DescribeLogStreams or FilterLogEvents with the job's prefix) three times: the first look finds no log group,
    the second writes the first half of `lines` to one stream per host (<job>/algo-<n>-<epoch>), the third the
    rest; after that, or max_running_describes describes, DescribeTrainingJob answers what moto says."""
    if not lines:
        return {}
    import contextlib
    import time

    import boto3
    import botocore.config

    agent = "byoc-test-emulator"  # in the user agent of the emulator's own requests, which the test leaves out
    group = "/aws/sagemaker/TrainingJobs"
    max_running_describes = 10  # a job nobody reads the log of still ends

    jobs: dict[str, dict] = {}  # job name -> region, hosts, looks, describes
    parts = [lines[: (len(lines) + 1) // 2], lines[(len(lines) + 1) // 2 :]]

    def creating(params: dict, context: dict, **_: object) -> None:
        context["emulated_job"] = params["TrainingJobName"], params["ResourceConfig"].get("InstanceCount", 1)

    def created(parsed: dict, context: dict, http_response, **_: object) -> None:
        if http_response.status_code == 200:
            name, hosts = context["emulated_job"]
            region = parsed["TrainingJobArn"].split(":")[3]
            jobs[name] = {"region": region, "hosts": hosts, "looks": 0, "describes": 0}

    def write(name: str, job: dict, part: list[str]) -> None:
        config = botocore.config.Config(user_agent_extra=agent)
        logs = boto3.client("logs", region_name=job["region"], config=config)
        if job["looks"] == 2:
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):  # another job's
                logs.create_log_group(logGroupName=group)
            job["streams"] = [f"{name}/algo-{host}-{int(time.time())}" for host in range(1, job["hosts"] + 1)]
            for stream in job["streams"]:
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
        for host, stream in enumerate(job["streams"], start=1):
            now = int(time.time() * 1000)
            events = [
                {"timestamp": now + index, "message": line.replace("host=algo-1", f"host=algo-{host}")}
                for index, line in enumerate(part)
            ]
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    def looked(params: dict, **_: object) -> None:
        name = params.get("logStreamNamePrefix", "").rstrip("/")
        job = jobs.get(name)
        if job and params.get("logGroupName") == group and job["looks"] < 3:
            job["looks"] += 1
            if job["looks"] > 1:
                write(name, job, parts[job["looks"] - 2])

    def described(parsed: dict, **_: object) -> None:
        job = jobs.get(parsed.get("TrainingJobName", ""))
        if job and job["looks"] < 3 and job["describes"] < max_running_describes and "TrainingJobStatus" in parsed:
            job["describes"] += 1
            parsed["TrainingJobStatus"] = "InProgress"

    return {
        "before-parameter-build.sagemaker.CreateTrainingJob": creating,
        "after-call.sagemaker.CreateTrainingJob": created,
        "after-call.sagemaker.DescribeTrainingJob": described,
        "before-parameter-build.logs.DescribeLogStreams": looked,
        "before-parameter-build.logs.FilterLogEvents": looked,
    }


def _emulator_client(service: str, region: str):
    """A client for the emulator's own requests: its user agent keeps them out of the test's record."""
    import boto3
    import botocore.config

    config = botocore.config.Config(user_agent_extra="byoc-test-emulator")
    return boto3.client(service, region_name=region, config=config)


def _region() -> str:
    import os

    return os.environ["AWS_DEFAULT_REGION"]  # the notebook's set-up cell sets it to its region


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _emulate_model_artifact(artifact: str) -> dict:
    """A completed training job's model.tar.gz in S3, as SageMaker uploads it; moto only names it."""
    if not artifact:
        return {}
    written: set[str] = set()

    def described(parsed: dict, **_: object) -> None:
        uri = parsed.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        if parsed.get("TrainingJobStatus") == "Completed" and uri and uri not in written:
            written.add(uri)
            bucket, key = _split_s3(uri)
            region = parsed["TrainingJobArn"].split(":")[3]
            with open(artifact, "rb") as packed:
                _emulator_client("s3", region).put_object(Bucket=bucket, Key=key, Body=packed.read())

    return {"after-call.sagemaker.DescribeTrainingJob": described}


def _emulate_transform_output(answers: list[str]) -> dict:
    """A transform job's output, as SageMaker writes it with SplitType=Line and AssembleWith=Line: for each input
    object, <output path>/<name>.out with one answer line per input line (answers taken in turn). moto completes a
    transform job at once and writes nothing."""
    if not answers:
        return {}

    def creating(params: dict, context: dict, **_: object) -> None:
        context["emulated_transform"] = params

    def created(context: dict, http_response, **_: object) -> None:
        params = context.get("emulated_transform")
        if http_response.status_code != 200 or not params:
            return
        s3 = _emulator_client("s3", _region())
        bucket, prefix = _split_s3(params["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
        out_bucket, out_prefix = _split_s3(params["TransformOutput"]["S3OutputPath"])
        folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            records = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode().splitlines()
            count = sum(1 for record in records if record.strip())
            lines = [answers[index % len(answers)] for index in range(count)]
            key = f"{out_prefix.rstrip('/')}/{item['Key'][len(folder) :]}.out"
            s3.put_object(Bucket=out_bucket, Key=key, Body="".join(f"{line}\n" for line in lines).encode())

    return {
        "before-parameter-build.sagemaker.CreateTransformJob": creating,
        "after-call.sagemaker.CreateTransformJob": created,
    }


def _emulate_async_output() -> dict:
    """An async invocation's answer where SageMaker writes it: <AsyncInferenceConfig output path>/<inference id>.out
    (failures: <failure path>/<inference id>-error.out). moto writes it to a bucket of its own, response.json."""

    def invoking(params: dict, context: dict, **_: object) -> None:
        context["emulated_async"] = params["EndpointName"]

    def invoked(parsed: dict, context: dict, http_response, **_: object) -> None:
        if http_response.status_code != 200 or "OutputLocation" not in parsed:
            return
        sagemaker = _emulator_client("sagemaker", _region())
        s3 = _emulator_client("s3", _region())
        endpoint = sagemaker.describe_endpoint(EndpointName=context["emulated_async"])
        config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        output = config["AsyncInferenceConfig"]["OutputConfig"]
        inference_id = parsed["InferenceId"]
        failures = output.get("S3FailurePath") or output["S3OutputPath"]
        moved = {
            "OutputLocation": f"{output['S3OutputPath'].rstrip('/')}/{inference_id}.out",
            "FailureLocation": f"{failures.rstrip('/')}/{inference_id}-error.out",
        }
        moto_bucket = _split_s3(parsed["OutputLocation"])[0]
        written = {found["Key"] for found in s3.list_objects_v2(Bucket=moto_bucket).get("Contents", [])}
        for name, location in moved.items():  # moto writes one of the two: the answer or the failure
            moto_key = _split_s3(parsed[name])[1]
            if moto_key in written:
                body = s3.get_object(Bucket=moto_bucket, Key=moto_key)["Body"].read()
                bucket, key = _split_s3(location)
                s3.put_object(Bucket=bucket, Key=key, Body=body)
            parsed[name] = location
        for key in written:
            s3.delete_object(Bucket=moto_bucket, Key=key)
        s3.delete_bucket(Bucket=moto_bucket)

    return {
        "before-parameter-build.sagemaker-runtime.InvokeEndpointAsync": invoking,
        "after-call.sagemaker-runtime.InvokeEndpointAsync": invoked,
    }


def _install() -> None:
    import json
    import os
    import sys

    loopback = {"127.0.0.1", "::1", "localhost", None}
    network_log = os.environ["BYOC_TEST_NETWORK_LOG"]

    def refuse_outside_loopback(event: str, args: tuple) -> None:
        if event == "socket.getaddrinfo":
            host = args[0]
        elif event == "socket.connect" and isinstance(args[1], tuple):
            host = args[1][0]
        else:
            return
        if isinstance(host, bytes):
            host = host.decode()
        if host not in loopback:
            with open(network_log, "a", encoding="utf-8") as log:
                log.write(f"{event} {host!r}\n")
            raise PermissionError(f"the notebook test allows no traffic outside 127.0.0.1 (tried {host!r})")

    sys.addaudithook(refuse_outside_loopback)

    if os.environ.get("BYOC_TEST_FALLBACK_PATH"):
        sys.path.append(os.environ["BYOC_TEST_FALLBACK_PATH"])

    import botocore.session

    def drop_empty_configs(parsed: dict, **_: object) -> None:
        # moto answers VpcConfig: {} and DataCaptureConfig: {}, which the SDK's response models reject;
        # AWS leaves the keys out.
        for key in ("VpcConfig", "DataCaptureConfig"):
            if parsed.get(key) == {}:
                del parsed[key]

    def fail(**_: object) -> None:
        raise RuntimeError("failure injected by the notebook test")

    failing = os.environ.get("BYOC_TEST_FAIL_OPERATION")
    # In this order: the job log's handler may still report a job InProgress, before its artifact is written.
    emulated = [
        *_emulate_job_log(json.loads(os.environ.get("BYOC_TEST_JOB_LOG") or "[]")).items(),
        *_emulate_model_artifact(os.environ.get("BYOC_TEST_MODEL_ARTIFACT", "")).items(),
        *_emulate_transform_output(json.loads(os.environ.get("BYOC_TEST_TRANSFORM_ANSWERS") or "[]")).items(),
        *_emulate_async_output().items(),
    ]
    original_init = botocore.session.Session.__init__

    def init_with_emulator_hooks(self: botocore.session.Session, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        for operation in ("DescribeModel", "DescribeEndpointConfig", "DescribeEndpoint"):
            self.register(f"after-call.sagemaker.{operation}", drop_empty_configs)
        if failing:
            self.register(f"before-call.{failing}", fail)
        for event, handler in emulated:
            self.register(event, handler)

    botocore.session.Session.__init__ = init_with_emulator_hooks

    # The SDK polls jobs and endpoints with sleeps of 5 to 30 s; moto finishes everything at once.
    import time

    original_sleep = time.sleep
    time.sleep = lambda seconds: original_sleep(min(seconds, 0.1))


_install()
del _install
