"""The inspect contract (tests/contract/inspect.py) on the embedded broker, and cases run here
only: tail's decoding, filters and follow mode, ``mesh dlq`` list, show and redrive, and a letter
whose value is read back from its topic. They check the tools' own reading and writing, the same
on any broker (Apache Kafka adds a bulk redrive behind transactional markers)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

from mesh.events import TaskCompleted, meta
from mesh.kafka.dlq import dead_letter
from mesh.kafka.partitions import partition_for
from mesh.settings import Settings
from tests.contract.brokers import OnEmbedded
from tests.contract.inspect import (
    AGENT,
    MAPPER,
    WAIT,
    InspectContract,
    create_topics,
    history,
    json_lines,
    make_dead_letters,
    mesh,
    ok_json,
    produce,
    produce_events,
    read_all,
    workflow_id,
)
from tests.helpers import assert_one_line_error

JUNK = b"\x00\xffnot json\n\x1b[31m"


async def _two_workflows_and_junk(settings: Settings) -> tuple[str, str]:
    await create_topics(settings)
    first, second = workflow_id(), workflow_id()
    topic = settings.topic("tasks.results")
    await produce_events(settings, topic, history(first) + history(second))
    await produce(settings, topic, [(b"junk", JUNK, [("x-tool", b"kcat")]), (b"gone", None, [])])
    return first, second


class TestInspectOnEmbedded(OnEmbedded, InspectContract):
    """``mesh tail``, ``dlq`` and ``groups`` on the embedded broker."""

    async def test_tail_decodes_filters_and_shows_raw_bytes(self, settings: Settings) -> None:
        """Every record comes out once (events decoded, foreign bytes escaped), a filter on decoded
        fields keeps only what matches, and --workflow reads only the workflow's partition."""
        first, _second = await _two_workflows_and_junk(settings)
        base = ("tail", "tasks.results", "--from-beginning", "--until-end")

        everything = mesh(settings, *base, "--json")
        assert everything.code == 0, everything.stderr
        lines = json_lines(everything)
        assert len(lines) == 12
        raw = [line for line in lines if line["type"] is None]
        assert {line["key"] for line in raw} == {"junk", "gone"}
        junk = next(line for line in raw if line["key"] == "junk")
        assert junk["raw"].startswith("\\x00\\xffnot json\\n\\x1b[31m")
        assert junk["value_bytes"] == len(JUNK)
        assert junk["decode_error"]
        assert junk["headers"] == {"x-tool": "kcat"}

        failed = mesh(
            settings, *base, "--json", "--filter", 'type == "task.failed" and attempt > 1'
        )
        got_failed = sorted((x["key"], x["event"]["attempt"]) for x in json_lines(failed))
        assert got_failed == sorted([(first, 2), (_second, 2)])

        mine = mesh(settings, *base, "--json", "--workflow", first, "--filter", 'task_id == "B"')
        got = json_lines(mine)
        assert [x["event"]["attempt"] for x in got] == [1, 2, 3]
        assert {x["key"] for x in got} == {first}
        assert {x["partition"] for x in got} == {partition_for(first, 6)}

        text = mesh(settings, *base, "--max", "3", "--workflow", first)
        assert text.code == 0, text.stderr
        shown = text.stdout.splitlines()
        assert len(shown) == 3
        assert "task.started" in shown[0]
        assert "task.completed" in shown[1]

        plain = mesh(settings, *base, "--filter", "raw")
        assert "<not an event>" in plain.stdout
        assert "\\x00\\xff" in plain.stdout
        assert "\x1b" not in plain.stdout  # control bytes never reach the terminal

    async def test_tail_follows_until_ctrl_c(self, settings: Settings) -> None:
        """Following from the end shows a record produced later; Ctrl-C then exits 0, no traceback,
        no unclosed client."""
        await create_topics(settings)
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "always",
            "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "MESH_TOPIC_PREFIX": settings.topic_prefix,
        }
        process = subprocess.Popen(  # noqa: ASYNC220 - a real `mesh` process to interrupt
            [sys.executable, "-m", "mesh", "tail", "tasks.results", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            wid = workflow_id()
            loop = asyncio.get_running_loop()
            line_future = loop.run_in_executor(None, process.stdout.readline)  # type: ignore[union-attr]
            deadline = time.monotonic() + WAIT
            while not line_future.done():  # it starts at the end: keep producing until it shows one
                assert time.monotonic() < deadline
                assert process.poll() is None
                await produce_events(settings, settings.topic("tasks.results"), history(wid)[:1])
                await asyncio.wait({line_future}, timeout=1.0)
            first = json.loads(await line_future)
            assert first["key"] == wid
            assert first["type"] == "task.started"
            process.send_signal(signal.SIGINT)
            _out, err = process.communicate(timeout=WAIT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, err
        assert "Traceback" not in err, err
        assert "Unclosed" not in err, err

    async def test_dlq_list_show_and_safe_redrive(self, settings: Settings) -> None:
        """Dead letters are listed and shown with their decoded original; a filtered redrive sends
        exactly the matching ones back (with mesh-redriven-from), and re-running any redrive sends
        nothing twice."""
        await create_topics(settings)
        wid = workflow_id()
        events = history(wid)[1:4]  # completed A, failed B (1), failed B (2)
        originals = await make_dead_letters(settings, "tasks.results", events)
        await produce(settings, settings.topic("dlq"), [(b"x", b"not a letter", [])])
        results = settings.topic("tasks.results")

        listed = mesh(settings, "dlq", "list", "--json")
        assert listed.code == 0, listed.stderr
        letters = [x for x in json.loads(listed.stdout)["letters"] if x["dead_letter"]]
        assert [x["original_offset"] for x in letters] == [r.offset for r in originals]
        assert {x["original_topic"] for x in letters} == {results}
        assert not any(x["redriven"] for x in letters)
        assert letters[0]["component"] == "tests"
        table = mesh(settings, "dlq", "list")
        assert "ValueError: cannot process" in table.stdout
        assert "not a dead letter" in table.stdout

        second = letters[1]
        shown = mesh(settings, "dlq", "show", f"{second['partition']}:{second['offset']}", "--json")
        document = json.loads(shown.stdout)
        assert document["letter"]["original_offset"] == originals[1].offset
        assert document["original"]["source"] == "letter"
        assert document["original"]["event"]["type"] == "task.failed"
        assert document["headers"]["mesh-dlq-original-topic"] == results
        assert (
            "original record"
            in mesh(settings, "dlq", "show", f"{second['partition']}:{second['offset']}").stdout
        )
        assert "no dead letter" in assert_one_line_error(mesh(settings, "dlq", "show", "0:999"))

        dry = ok_json(mesh(settings, "dlq", "redrive", "--dry-run", "--json"))
        assert dry["redriven"] == 3
        assert dry["dry_run"] is True
        assert len(await read_all(settings, results, at_least=3)) == 3  # nothing sent

        only_failed = ("dlq", "redrive", "--filter", 'original_type == "task.failed"', "--json")
        first_run = ok_json(mesh(settings, *only_failed))
        assert first_run["redriven"] == 2
        assert first_run["by_topic"] == {results: 2}
        after = await read_all(settings, results, at_least=5)
        redriven = [r for r in after if any(k == "mesh-redriven-from" for k, _ in r.headers)]
        assert sorted(r.value or b"" for r in redriven) == sorted(
            r.value or b"" for r in originals[1:]
        )
        assert {r.key for r in redriven} == {wid.encode()}
        assert all(MAPPER.decode(r.value, r.headers).type == "task.failed" for r in redriven)

        again = ok_json(mesh(settings, *only_failed))
        assert again["redriven"] == 0
        assert again["already_redriven"] == 2
        rest = ok_json(mesh(settings, "dlq", "redrive", "--json"))
        assert rest["redriven"] == 1
        assert ok_json(mesh(settings, "dlq", "redrive", "--json"))["redriven"] == 0
        assert len(await read_all(settings, results, at_least=6)) == 6
        final = ok_json(mesh(settings, "dlq", "list", "--json"))["letters"]
        assert all(x["redriven"] for x in final if x["dead_letter"])
        text = mesh(settings, "dlq", "redrive")
        assert "redrove 0 dead letter(s)" in text.stdout

    async def test_letter_without_its_value_is_read_back_from_the_topic(
        self,
        settings: Settings,
    ) -> None:
        """A dead letter too large to carry the original value names where it is; show and redrive
        read it back from the original topic, partition and offset."""
        await create_topics(settings)
        wid = workflow_id()
        big = TaskCompleted(
            **meta(AGENT, correlation_id=wid),
            workflow_id=wid,
            task_id="A",
            attempt=1,
            agent_id="a1",
            output={"text": "x" * 5_000},
        )
        results = settings.topic("tasks.results")
        await produce_events(settings, results, [big])
        (original,) = await read_all(settings, results, at_least=1)
        letter = dead_letter(
            original, ValueError("too big to handle"), "tests", max_event_bytes=3_000
        )
        await produce(settings, settings.topic("dlq"), [tuple(letter)])  # type: ignore[list-item]

        (listed,) = ok_json(mesh(settings, "dlq", "list", "--json"))["letters"]
        shown = ok_json(
            mesh(settings, "dlq", "show", f"{listed['partition']}:{listed['offset']}", "--json")
        )
        assert shown["letter"]["original_value_base64"] is None
        assert shown["original"]["source"] == "topic"
        assert shown["original"]["event"]["output"] == {"text": "x" * 5_000}

        assert ok_json(mesh(settings, "dlq", "redrive", "--json"))["redriven"] == 1
        copies = await read_all(settings, results, at_least=2)
        assert [r.value for r in copies] == [original.value, original.value]
        assert copies[1].key == wid.encode()
