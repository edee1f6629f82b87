"""IPython startup file for the notebook's kernel under test: everything the emulator needs, and a guard.

tests/test_notebook.py copies this into the kernel's IPYTHONDIR, so it runs before the notebook's first
cell and the notebook itself stays exactly what a user runs against AWS. It reads its settings from the
environment the test gives the kernel:

- BYOC_TEST_NETWORK_LOG: file that records any attempt to reach a host other than the loopback one; the
  attempt is refused, and the test asserts the file stays empty.
- BYOC_TEST_FALLBACK_PATH: site-packages appended after the kernel's own, for framework packages that
  only the template's main environment holds.
- BYOC_TEST_FAIL_OPERATION: a sagemaker-runtime operation (InvokeEndpoint) made to fail, to prove the
  notebook still cleans up.
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
    job_log = _emulate_job_log(json.loads(os.environ.get("BYOC_TEST_JOB_LOG") or "[]"))
    original_init = botocore.session.Session.__init__

    def init_with_emulator_hooks(self: botocore.session.Session, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        for operation in ("DescribeModel", "DescribeEndpointConfig", "DescribeEndpoint"):
            self.register(f"after-call.sagemaker.{operation}", drop_empty_configs)
        if failing:
            self.register(f"before-call.sagemaker-runtime.{failing}", fail)
        for event, handler in job_log.items():
            self.register(event, handler)

    botocore.session.Session.__init__ = init_with_emulator_hooks

    # The SDK polls jobs and endpoints with sleeps of 5 to 30 s; moto finishes everything at once.
    import time

    original_sleep = time.sleep
    time.sleep = lambda seconds: original_sleep(min(seconds, 0.1))


_install()
del _install
