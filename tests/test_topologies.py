"""The README's "Past one machine: topologies": every config it writes loads, and each
topology's configs fit together (the HA pair reads one server under one name, N servers
have N names, one store, no listener twice, an extension in one config only); its
systemd lines name the template unit and configs that exist; and the one-box and
N-servers try-outs, pasted as they are (on free ports, a real PostgreSQL for N servers),
deliver what the README says the receiver prints. (The HA pair's try-out needs the
lab's Asterisk and places calls: tests/lab territory, not run here.)"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import AmiConfig, Config, load_config
from tests.conftest import REPO, Backend, free_port

README = (REPO / "README.md").read_text(encoding="utf-8")
START = "## Past one machine: topologies"
#: ``ami.name`` comes with issue 19's part 2: until it is merged, snippets are loaded without it
HAS_AMI_NAME = "name" in AmiConfig.model_fields


def section() -> str:
    assert START in README, "the topologies section is gone from the README"
    rest = README[README.index(START) + len(START) :]
    return rest[: rest.index("\n## ")]


def subsection(title: str) -> str:
    text = section()
    assert f"### {title}" in text, title
    rest = text[text.index(f"### {title}") :]
    nxt = rest.find("\n### ", 1)
    return rest if nxt < 0 else rest[:nxt]


def heredocs(text: str) -> dict[str, str]:
    """``cat > PATH <<'EOF' ... EOF`` blocks: path -> content."""
    return {
        m.group(1): m.group(2) + "\n" for m in re.finditer(r"cat > (\S+) <<'EOF'\n(.*?)\nEOF\n", text, re.S)
    }


def sed_copies(text: str, docs: dict[str, str]) -> dict[str, str]:
    """``sed -e 's/a/b/' ... SRC > DST`` lines applied to the heredocs (the HA pair's second config)."""
    out = {}
    for m in re.finditer(r"^sed ((?:-e '[^']*' )+)(\S+) > (\S+)$", text, re.M):
        content = docs[m.group(2)]
        for expr in re.findall(r"-e 's/([^/]*)/([^/]*)/'", m.group(1)):
            content = content.replace(*expr)
        out[m.group(3)] = content
    return out


def load(tmp_path: Path, path: str, content: str) -> Config:
    data: dict[str, Any] = yaml.safe_load(content)
    if not HAS_AMI_NAME:  # (the one place to drop once ami.name exists)
        data["ami"].pop("name", None)
    copy = tmp_path / Path(path).name
    copy.write_text(yaml.safe_dump(data))
    return load_config(copy)


def configs(tmp_path: Path, title: str) -> dict[str, tuple[Config, dict[str, Any]]]:
    text = subsection(title)
    docs = heredocs(text)
    docs.update(sed_copies(text, docs))
    return {Path(p).stem: (load(tmp_path, p, c), yaml.safe_load(c)) for p, c in docs.items()}


def listeners(config: Config) -> set[str]:
    return {config.api.listen, config.management.listen}


def test_every_topology_is_there_with_commands() -> None:
    text = section()
    for title in ("(a) One box", "(b) An HA pair beside one Asterisk", "(c) N Asterisk servers sharing one "
                  "database", "PostgreSQL itself"):  # fmt: skip
        assert f"### {title}" in text, title
    for tool in ("Patroni", "pg_auto_failover", "repmgr", "HAProxy", "PgBouncer", "target_session_attrs=read-write",
                 "pgBackRest", "Barman"):  # fmt: skip
        assert tool in subsection("PostgreSQL itself"), tool
    assert "apt-get install -y postgresql" in text


def test_one_box_config_loads(tmp_path: Path) -> None:
    found = configs(tmp_path, "(a) One box")
    assert list(found) == ["one-box"]
    config, raw = found["one-box"]
    assert config.store.url is None and raw["store"]["path"].startswith("/tmp/ami-bridge-try/")
    assert "name" not in raw["ami"]  # one box: no server name needed (server is host:port)
    assert "--port 15101" in subsection("(a) One box") and config.ami.port == 15101


def test_ha_pair_reads_one_server_under_one_name_on_one_database(tmp_path: Path) -> None:
    found = configs(tmp_path, "(b) An HA pair")
    assert sorted(found) == ["ha-a", "ha-b"]
    (a, raw_a), (b, raw_b) = found["ha-a"], found["ha-b"]
    assert raw_a["ami"] == raw_b["ami"] and raw_a["ami"]["name"]  # same Asterisk, same name
    assert a.store.url is not None and a.store.url == b.store.url
    assert a.extensions == b.extensions
    assert not listeners(a) & listeners(b)  # two processes on one machine
    lab = yaml.safe_load((REPO / "lab" / "bridge.yaml").read_text())["ami"]
    assert (a.ami.host, a.ami.port, a.ami.username, a.ami.secret) == (lab["host"], lab["port"], lab["username"],
                                                                      lab["secret"])  # fmt: skip
    plays = re.findall(r"make lab-play NAME=(\S+)", subsection("(b) An HA pair"))
    assert plays
    for name in plays:  # a lab scenario (each has its recording in fixtures/)
        assert (REPO / "fixtures" / f"{name}.ami").exists(), name


def test_n_servers_have_their_own_names_extensions_and_ports_on_one_database(tmp_path: Path) -> None:
    found = configs(tmp_path, "(c) N Asterisk servers")
    assert sorted(found) == ["pbx1", "pbx2"]
    (one, raw1), (two, raw2) = found["pbx1"], found["pbx2"]
    assert [raw1["ami"]["name"], raw2["ami"]["name"]] == ["pbx1", "pbx2"]  # config file = server name
    assert one.store.url is not None and one.store.url == two.store.url
    assert one.ami.port != two.ami.port
    assert not listeners(one) & listeners(two)
    assert not {e.id for e in one.extensions} & {e.id for e in two.extensions}
    assert not {e.endpoint for e in one.extensions} & {e.endpoint for e in two.extensions}
    text = subsection("(c) N Asterisk servers")
    # each replay server plays what its bridge's config lists (copy 1: 101 -> 1101)
    assert re.search(r"--port 15101 --rate \S+ --calls \d+ \\\n", text)
    assert re.search(r"--port 15102 --rate \S+ --calls \d+ --first-copy 1 \\\n", text)
    assert {e.endpoint for e in two.extensions} == {"1" + str(e.endpoint) for e in one.extensions}
    # every config's API is asked for its own extensions
    pairs = re.findall(r"(\d{4})/extension/(\d+)", text)
    assert pairs
    for port, ext in pairs:
        owner = one if one.api.listen.endswith(f":{port}") else two
        assert int(ext) in {e.id for e in owner.extensions}, (port, ext)


def test_systemd_lines_name_the_template_and_the_configs(tmp_path: Path) -> None:
    text = subsection("(c) N Asterisk servers")
    found = configs(tmp_path, "(c) N Asterisk servers")
    units = re.findall(r"ami-bridge@(\w+)(?=[\s'])", text)
    assert units and set(units) <= set(found)
    assert "systemd/ami-bridge@.service" in text and (REPO / "systemd" / "ami-bridge@.service").exists()
    b = subsection("(b) An HA pair")
    assert "systemctl enable --now ami-bridge@pbx1" in b


@pytest.mark.parametrize("title", ["(a) One box", "(b) An HA pair", "(c) N Asterisk servers"])
def test_listeners_are_the_documented_defaults_or_their_neighbours(tmp_path: Path, title: str) -> None:
    """The first process of each try-out keeps the defaults the rest of the README uses."""
    first = next(iter(configs(tmp_path, title).values()))[0]
    assert (first.api.listen, first.management.listen) == ("127.0.0.1:8080", "127.0.0.1:8081")


def try_out(title: str, tmp_path: Path, store_url: str | None = None) -> str:
    """The subsection's first shell block as a newcomer would paste it, on free ports, in
    tmp_path (and on ``store_url``), with this interpreter; its output once the receiver
    has printed what the README says it prints (or 60 s)."""
    block = re.search(r"```sh\n(.*?)\n```", subsection(title), re.S)
    assert block
    script = block.group(1).replace(".venv/bin/python", sys.executable)
    script = script.replace(".venv/bin/ami-bridge", f"{sys.executable} -m bridge")
    script = script.replace("/tmp/ami-bridge-try", str(tmp_path))
    ports: dict[str, str] = {}
    script = re.sub(r"\b(15101|15102|9000|8080|8081|8090|8091)\b",
                    lambda m: ports.setdefault(m.group(1), str(free_port())), script)  # fmt: skip
    if store_url is not None:
        script = script.replace("postgresql://bridge:try-password@127.0.0.1:5432/bridge", store_url)
    if not HAS_AMI_NAME:  # (the one place to drop once ami.name exists)
        script = re.sub(r"ami: \{name: \w+, ", "ami: {", script)
    out = tmp_path / "out.txt"
    (tmp_path / "try.sh").write_text(script + "\nwait\n")
    with open(out, "wb") as sink:
        proc = subprocess.Popen(["bash", str(tmp_path / "try.sh")], cwd=REPO, stdout=sink,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            text = out.read_text()
            if all(f'"CalledNumber": "{n}"' in text for n in WANTED[title]) and text.count(
                '"ready": true'
            ) == len(WANTED[title]):
                break
            time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the block's processes: one process group
        proc.wait(timeout=30)
    return out.read_text()


#: what the receiver prints per try-out, as its text says: a hangup for each server's callee
WANTED = {"(a) One box": ["000*102"], "(c) N Asterisk servers": ["000*102", "000*1102"]}


def test_the_one_box_try_out_delivers(tmp_path: Path) -> None:
    """(a)'s commands, pasted: the bridge on SQLite is ready and the receiver gets the hangup."""
    text = try_out("(a) One box", tmp_path)
    assert 'POST /hook {"EventType": "hangup"' in text and '"CalledNumber": "000*102"' in text, text[-2000:]
    assert '"store": "sqlite"' in text and '"ready": true' in text


def test_the_n_servers_try_out_delivers_from_both(tmp_path: Path, pg_server: Any) -> None:
    """(c)'s commands, pasted, on a real PostgreSQL: both bridges ready on the one database,
    the receiver gets each server's hangup."""
    text = try_out(
        "(c) N Asterisk servers", tmp_path, Backend("postgresql", tmp_path, pg_server.url).url("try")
    )
    for callee in WANTED["(c) N Asterisk servers"]:
        assert '"EventType": "hangup", ' in text and f'"CalledNumber": "{callee}"' in text, text[-2000:]
    assert text.count('"store": "postgresql"') == 2 and text.count('"ready": true') == 2, text[-2000:]
    if HAS_AMI_NAME:
        assert '"server": "pbx1"' in text and '"server": "pbx2"' in text
