"""A real Triton Inference Server, from the ``nvidia-pytriton`` wheel installed in ``.venv-triton``.

The wheel ships ``tritonserver`` 2.51 with the python backend only, so ONNX models run through onnxruntime inside
a python-backend ``model.py`` (see :mod:`serving.triton_repository`). Triton needs numpy<2 while the stream
workers need numpy>=2, so it lives in its own virtualenv, as it would live in its own container in production.
This module only starts and stops the server; it imports nothing from that virtualenv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from localstack.process import STOP_GRACE_S, alive, pid_from, port_in_use, terminate

from trail.errors import TrailError

__all__ = ["LocalTriton", "TritonStartError"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = PROJECT_ROOT / ".venv-triton"


class TritonStartError(TrailError, RuntimeError):
    """The server could not be started; the message carries the reason and the tail of its log."""


@dataclass
class LocalTriton:
    """One ``tritonserver`` process bound to 127.0.0.1 with explicit model control over ``model_repository``."""

    model_repository: Path
    work_dir: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    venv: Path = DEFAULT_VENV
    load_models: tuple[str, ...] = ()
    exit_timeout_s: int = 5
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "tritonserver.log"

    @property
    def pid_path(self) -> Path:
        return self.work_dir / "tritonserver.pid"

    def start(self, timeout_s: float = 60.0) -> "LocalTriton":
        tritonserver, backends = self._prepare()
        command = [
            str(tritonserver),
            f"--model-repository={self.model_repository.resolve()}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            "--disable-auto-complete-config",
            "--strict-readiness=false",  # one broken model must not make the whole server "not ready"
            f"--exit-timeout-secs={self.exit_timeout_s}",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
            "--allow-sagemaker=false", "--allow-vertex-ai=false",
            "--log-verbose=0",
            *(f"--load-model={name}" for name in self.load_models),
        ]
        log = open(self.log_path, "wb")  # one log per start, so an error shows this start only
        self._process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self._environment(), start_new_session=True,
        )
        log.close()
        self.pid_path.write_text(str(self._process.pid))
        self._wait_ready(timeout_s)
        return self

    def stop(self, timeout_s: float = STOP_GRACE_S) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``; True when the server shut down by itself."""
        pid = self._process.pid if self._process else pid_from(self.pid_path)
        clean = terminate(pid, self._process, timeout_s) if pid is not None else True
        self._process = None
        self.pid_path.unlink(missing_ok=True)
        return clean

    def kill(self) -> None:
        """SIGKILL the server and its python-backend stubs: for failure tests."""
        if self._process is not None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._process.wait()
            self._process = None

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def load_model(self, name: str) -> None:
        """Ask the server (explicit model control) to load or reload ``name`` from the repository."""
        self._post(f"/v2/repository/models/{name}/load")

    def unload_model(self, name: str) -> None:
        self._post(f"/v2/repository/models/{name}/unload")

    def model_ready(self, name: str, version: str = "") -> bool:
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/ready"
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no server log)"

    def __enter__(self) -> "LocalTriton":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _post(self, path: str) -> None:
        request = urllib.request.Request(self.url + path, data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120):
                return
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except ValueError:
                pass
            raise TritonStartError(f"Triton refused {path}: {detail}") from None

    def _prepare(self) -> tuple[Path, Path]:
        """Locate the server in the venv and lay out the backend folder the recipe needs."""
        python = self.venv / "bin" / "python"
        if not python.exists():
            raise TritonStartError(f"no Triton virtualenv at {self.venv}: run `make setup` first")
        package = Path(subprocess.run(
            [str(python), "-c", "import pytriton, os; print(os.path.dirname(pytriton.__file__))"],
            capture_output=True, text=True, check=False,
        ).stdout.strip() or "/nonexistent")
        server_root = package / "tritonserver"
        tritonserver = server_root / "bin" / "tritonserver"
        if not tritonserver.exists():
            raise TritonStartError(f"tritonserver not found in {server_root}: is nvidia-pytriton installed in {self.venv}?")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        backends = self.work_dir / "backends" / "python"
        backends.mkdir(parents=True, exist_ok=True)
        links = {
            "libtriton_python.so": server_root / "backends" / "python" / "libtriton_python.so",
            "triton_python_backend_utils.py": server_root / "backends" / "python" / "triton_python_backend_utils.py",
            "triton_python_backend_stub": server_root / "python_backend_stubs" / "3.11" / "triton_python_backend_stub",
        }
        for name, target in links.items():
            link = backends / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target)
        for port in (self.http_port, self.grpc_port, self.metrics_port):
            if port_in_use(port):
                raise TritonStartError(f"port {port} on 127.0.0.1 is already in use (another Triton running?)")
        return tritonserver, backends.parent

    def _environment(self) -> dict[str, str]:
        """The stub ignores PYTHONPATH: the venv's bin goes first on PATH, and the interpreter's own libpython
        goes first on LD_LIBRARY_PATH (else Debian's libpython3.11 may be picked up and fail)."""
        python = self.venv / "bin" / "python"
        libdir = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        env["LD_LIBRARY_PATH"] = f"{libdir}:{env.get('LD_LIBRARY_PATH', '')}".rstrip(":")
        env["VIRTUAL_ENV"] = str(self.venv)
        env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        return env

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise TritonStartError(
                    f"tritonserver exited with code {self._process.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            time.sleep(0.05)
        self.stop(timeout_s=5)
        raise TritonStartError(f"tritonserver was not ready within {timeout_s:.0f} s; log tail:\n{self.log_tail()}")
