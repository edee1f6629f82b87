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
"""


def _install() -> None:
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
    original_init = botocore.session.Session.__init__

    def init_with_emulator_hooks(self: botocore.session.Session, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        for operation in ("DescribeModel", "DescribeEndpointConfig", "DescribeEndpoint"):
            self.register(f"after-call.sagemaker.{operation}", drop_empty_configs)
        if failing:
            self.register(f"before-call.sagemaker-runtime.{failing}", fail)

    botocore.session.Session.__init__ = init_with_emulator_hooks

    # The SDK polls jobs and endpoints with sleeps of 5 to 30 s; moto finishes everything at once.
    import time

    original_sleep = time.sleep
    time.sleep = lambda seconds: original_sleep(min(seconds, 0.1))


_install()
del _install
