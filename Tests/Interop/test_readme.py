"""Every code block in README.md runs as written, or says why it does not.

Each fenced block in README.md is preceded by a marker comment:

- ``<!-- snippet: run -->``: the test runs it, by its language tag:
  - ``python``: written to a file and run with the venv's Python; it must exit 0;
  - ``sh``: run with ``bash -euo pipefail``; it must exit 0;
  - ``console``: a transcript: each ``$ COMMAND`` line is run and its output must equal the lines
    that follow it, up to the next ``$``;
  - ``ini``: written to an ``agentd.ini`` (the files it names are made beside it: certificates,
    token files) and loaded by ``agentd run --config``, which must print its ``ready:`` line;
  - ``swift``: must appear in the source file the marker names (``<!-- snippet: run, in
    Plugins/GreeterAgent/Greeter.swift -->``), which ``swift build`` compiles.
- ``<!-- snippet: run, needs TOOL -->``: as ``run``, skipped (saying so) when TOOL is not on PATH.
- ``<!-- snippet: skip: WHY -->``: not run; the test reports it as skipped with WHY.

A block without a marker fails ``test_every_block_is_marked``.

The blocks run in the README's order, in one working folder (the repository's top-level entries
linked into it, so that relative paths such as ``Plugins/...`` resolve and files the blocks
write stay there), with ``agentd`` first on PATH, against one ``agentd run`` serving the example
plugins on its embedded host. The README's addresses are mapped to the test's: ``127.0.0.1:50051``
(also the CLI's default ``--host``, which the test then passes explicitly) becomes that host's
address, a ``listen`` of ``0.0.0.0:50051`` becomes ``127.0.0.1:0``, and the NATS servers
``nats://10.0.0.x:4222`` a nats-server the test starts.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from cluster_support import NatsServer
from conftest import REPO, agentd_path
from runtime_support import ALL_PLUGINS, ECHO, OUR_HOST, RuntimeLauncher, RuntimeProcess, plugin_build_dir

README = REPO / "README.md"

MARKER = re.compile(r"^<!--\s*snippet:\s*(?P<spec>.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")

# The README's addresses, and what they become in the test.
README_HOST = "127.0.0.1:50051"
README_LISTEN = "0.0.0.0:50051"
README_NATS = re.compile(r"nats://10\.0\.0\.\d+:4222")

# The client commands that take --host (the CLI's default is README_HOST).
CLIENT_COMMAND = re.compile(r"\bagentd (send|publish|status|state (?:save|load|delete))\b")

# The NATS token the README's [cluster] token_file block is given.
NATS_TOKEN = "readme-nats-token-0123456789"

SNIPPET_TIMEOUT = 60.0


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    spec: Optional[str]  # the marker's text, None without a marker

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang or 'text'}"


def readme_blocks() -> List[Block]:
    blocks: List[Block] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i
        i += 1
        body: List[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        # The marker: the nearest non-blank line above the fence.
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        marker = MARKER.match(lines[j]) if j >= 0 else None
        blocks.append(Block(start + 1, fence.group("lang"), "\n".join(body) + "\n", marker.group("spec") if marker else None))
        i += 1
    return blocks


BLOCKS = readme_blocks()


def test_every_block_is_marked() -> None:
    """Every fenced block in README.md says whether it runs (see this file's docstring)."""
    unmarked = [f"README.md:{b.line} ```{b.lang}" for b in BLOCKS if b.spec is None]
    assert not unmarked, (
        "README.md blocks without a '<!-- snippet: run -->' or '<!-- snippet: skip: WHY -->' line above them:\n"
        + "\n".join(unmarked)
    )
    bad = [f"README.md:{b.line}: {b.spec}" for b in BLOCKS if b.spec and not re.match(r"^(run\b|skip: \S)", b.spec)]
    assert not bad, "unknown snippet markers:\n" + "\n".join(bad)


# --- The environment the blocks run in ------------------------------------------------------------------


class ReadmeEnv:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.work = base / "work"
        self.work.mkdir()
        for entry in REPO.iterdir():
            if not entry.name.startswith(".") and entry.name != "README.md":
                (self.work / entry.name).symlink_to(entry)
        self.launcher = RuntimeLauncher(OUR_HOST, base)
        self.setup = self.launcher(ALL_PLUGINS)
        self.address = self.setup.address
        self._nats: Dict[bool, NatsServer] = {}
        self.env = dict(os.environ)
        self.env["PATH"] = f"{agentd_path().parent}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"
        self.count = 0

    def nats(self, token: bool) -> NatsServer:
        """A nats-server with JetStream; with ``token``, one that requires NATS_TOKEN."""
        if token not in self._nats:
            name = "nats-token" if token else "nats"
            self._nats[token] = NatsServer(self.base / name, ("--auth", NATS_TOKEN) if token else ())
        return self._nats[token]

    def map_addresses(self, text: str) -> str:
        text = text.replace(README_HOST, self.address).replace(README_LISTEN, "127.0.0.1:0")
        if README_NATS.search(text):
            token = re.search(r"^\s*token(_file)?\s*=", text, re.M) is not None
            text = README_NATS.sub(self.nats(token).url, text)
        return text

    def map_command(self, command: str) -> str:
        command = self.map_addresses(command)
        if CLIENT_COMMAND.search(command) and "--host" not in command:
            command = CLIENT_COMMAND.sub(lambda m: f"{m.group(0)} --host {self.address}", command, count=1)
        return command

    def bash(self, script: str, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=cwd or self.work, env=self.env,
            capture_output=True, text=True, timeout=SNIPPET_TIMEOUT,
        )

    def close(self) -> List[str]:
        problems = self.launcher.stop_all()
        for server in self._nats.values():
            server.stop()
        return problems


@pytest.fixture(scope="module")
def readme_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeEnv]:
    env = ReadmeEnv(tmp_path_factory.mktemp("readme"))
    yield env
    problems = env.close()
    assert not problems, "\n\n".join(problems)


def failure(block: Block, what: str, result: subprocess.CompletedProcess, text: str) -> str:
    return (
        f"README.md:{block.line} ```{block.lang}: {what} (exit status {result.returncode})\n--- ran:\n{text}"
        f"--- stdout:\n{result.stdout}--- stderr:\n{result.stderr}"
    )


# --- Each kind of block ----------------------------------------------------------------------------------


def run_python(env: ReadmeEnv, block: Block) -> None:
    env.count += 1
    text = env.map_addresses(block.text)
    script = env.work / f"readme_snippet_{env.count}.py"
    script.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, script.name], cwd=env.work, env=env.env, capture_output=True, text=True, timeout=SNIPPET_TIMEOUT,
    )
    assert result.returncode == 0, failure(block, "the Python snippet failed", result, text)


def run_sh(env: ReadmeEnv, block: Block) -> None:
    text = env.map_command(block.text)
    result = env.bash(text)
    assert result.returncode == 0, failure(block, "the shell snippet failed", result, text)


def run_console(env: ReadmeEnv, block: Block) -> None:
    steps: List[List[str]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append([line[2:]])
        elif steps:
            steps[-1].append(line)
    assert steps, f"README.md:{block.line}: a console block with no '$ ' command"
    for command, *expected in steps:
        mapped = env.map_command(command)
        result = env.bash(mapped)
        assert result.returncode == 0, failure(block, "a command failed", result, mapped + "\n")
        assert result.stdout.rstrip("\n").split("\n") == expected, failure(
            block, f"the output of '{command}' differs from the README's {expected!r}", result, mapped + "\n"
        )


def make_pki(folder: Path) -> None:
    """A certificate authority and, signed by it, host.pem (for 127.0.0.1 and localhost) and
    runtime.pem, with their keys, as the README's [host]/[runtime] TLS block names them."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the README's TLS files", pytrace=False)
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        result = subprocess.run([openssl, *args], cwd=folder, capture_output=True, text=True)
        assert result.returncode == 0, f"openssl {' '.join(args)}:\n{result.stderr}"

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=readme-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    for name, extensions in (
        ("host", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("runtime", "extendedKeyUsage=clientAuth\n"),
    ):
        (folder / f"{name}.ext").write_text(extensions)
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", f"{name}.ext", "-out", f"{name}.pem")


def run_ini(env: ReadmeEnv, block: Block) -> None:
    env.count += 1
    folder = env.base / f"ini{env.count}"
    folder.mkdir()
    (folder / "plugins").mkdir()
    shutil.copy2(plugin_build_dir() / ECHO, folder / "plugins" / ECHO)  # `ready:` comes once plugins load
    text = env.map_addresses(block.text)
    if re.search(r"^\s*tls_\w+\s*=\s*tls/", text, re.M):
        make_pki(folder / "tls")
    if re.search(r"^\s*auth_tokens_file\s*=\s*tokens\s*$", text, re.M):
        (folder / "tokens").write_text("readme-host-token-0123456789abcdef\n")
    token_file = re.search(r"^\s*token_file\s*=\s*(\S+)\s*$", text, re.M)
    if token_file:
        (folder / token_file.group(1)).write_text(NATS_TOKEN + "\n")
    ini = folder / "agentd.ini"
    ini.write_text(text, encoding="utf-8")
    argv = [str(agentd_path()), "run", "--config", str(ini), "--listen", "127.0.0.1:0", "--plugins", str(folder / "plugins")]
    # RuntimeProcess waits for "listening on" and "ready:" (and fails the test with the log if they do not come).
    runtime = RuntimeProcess(argv, cwd=folder, embedded=True)
    died, _ = runtime.terminate()
    assert died is None, f"README.md:{block.line} ```ini: agentd run exited with {died}\n{runtime.stderr()}"


def normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def run_swift(env: ReadmeEnv, block: Block, spec: str) -> None:
    match = re.search(r"\bin (\S+)", spec)
    assert match, f"README.md:{block.line}: a swift block's marker must name its file: 'run, in PATH'"
    source = REPO / match.group(1)
    assert source.is_file(), f"README.md:{block.line}: {source} does not exist"
    # The block may be an excerpt, indented differently: compare line by line, stripped.
    wanted = [line.strip() for line in normalized(block.text).splitlines()]
    have = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
    found = any(have[i:i + len(wanted)] == wanted for i in range(len(have) - len(wanted) + 1))
    assert found, f"README.md:{block.line}: the swift block is not (any longer) in {match.group(1)}"


RUNNERS = {"python": run_python, "sh": run_sh, "console": run_console, "ini": run_ini}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block(readme_env: ReadmeEnv, block: Block) -> None:
    """The README's blocks in order: each marked ``run`` runs as written; the others are
    reported as skipped with the marker's reason."""
    spec = block.spec
    if spec is None:
        pytest.skip(f"README.md:{block.line}: no snippet marker (test_every_block_is_marked fails)")
    if spec.startswith("skip:"):
        pytest.skip(f"README.md:{block.line} ```{block.lang}: {spec[5:].strip()}")
    needs = re.search(r"\bneeds (\S+)", spec)
    if needs and shutil.which(needs.group(1)) is None:
        pytest.skip(f"README.md:{block.line} ```{block.lang}: {needs.group(1)} is not installed")
    if block.lang == "swift":
        run_swift(readme_env, block, spec)
        return
    runner = RUNNERS.get(block.lang)
    assert runner is not None, f"README.md:{block.line}: no way to run a ```{block.lang} block; mark it skip"
    runner(readme_env, block)
