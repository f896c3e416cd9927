"""An attempt's output in chunks: whole lines, batched, capped with a truncation marker."""

from __future__ import annotations

import asyncio
import threading

from mesh.agents._stream import CHUNK_CHARS, AttemptOutput
from mesh.events import OutputStream

Sent = tuple[OutputStream, int, str, bool]


class Recorder:
    """What a publish callback was given, with a way to wait for it."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.changed = asyncio.Event()

    async def __call__(self, stream: OutputStream, chunk: int, text: str, cut: bool) -> None:
        self.sent.append((stream, chunk, text, cut))
        self.changed.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.sent) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_lines_go_out_while_running_and_a_partial_line_at_the_close() -> None:
    """Complete lines are published by the flusher; a line without its end waits for it."""
    sent = Recorder()
    output = AttemptOutput(sent, interval=0.01, cap=10_000)
    output.start()
    output.write("stdout", "one\ntw")
    await sent.until(1)
    assert sent.sent == [("stdout", 0, "one\n", False)]
    output.write("stderr", "oops\n")
    output.write("stdout", "o\nthree")
    await sent.until(3)
    await output.close()
    # Streams go out in the order they first printed, each chunk numbered in turn.
    assert sent.sent[1:3] == [("stdout", 1, "two\n", False), ("stderr", 2, "oops\n", False)]
    assert sent.sent[3:] == [("stdout", 3, "three", False)]


async def test_the_cap_cuts_the_output_and_marks_the_chunk_that_reached_it() -> None:
    """Past the cap nothing more goes out; the last chunk says truncated."""
    sent = Recorder()
    output = AttemptOutput(sent, interval=5, cap=10)
    output.start()
    output.write("stdout", "123456\n")
    output.write("stdout", "789012\n")
    await output.close()
    output.write("stdout", "after the close\n")
    assert sent.sent == [("stdout", 0, "123456\n789", True)]
    assert output.truncated


async def test_the_marker_goes_out_when_the_cap_is_reached_exactly() -> None:
    sent = Recorder()
    output = AttemptOutput(sent, interval=0.01, cap=4)
    output.start()
    output.write("stdout", "abcd\n")  # 5 bytes: 4 fit
    await output.close()
    output.write("stdout", "more\n")
    assert sent.sent == [("stdout", 0, "abcd", True)]


async def test_a_burst_goes_out_in_bounded_chunks() -> None:
    sent = Recorder()
    output = AttemptOutput(sent, interval=5, cap=10 * CHUNK_CHARS)
    output.start()
    output.write("text", "x" * (2 * CHUNK_CHARS + 5))
    await output.close()
    assert [len(text) for _, _, text, _ in sent.sent] == [CHUNK_CHARS, CHUNK_CHARS, 5]
    assert [chunk for _, chunk, _, _ in sent.sent] == [0, 1, 2]


async def test_text_written_from_another_thread_is_published() -> None:
    """A plain ``def`` Python agent writes from its worker thread."""
    sent = Recorder()
    output = AttemptOutput(sent, interval=0.01, cap=1_000)
    output.start()
    thread = threading.Thread(target=output.write, args=("text", "from a thread\n"))
    thread.start()
    thread.join()
    await sent.until(1)
    await output.close()
    assert sent.sent == [("text", 0, "from a thread\n", False)]


async def test_an_attempt_that_prints_nothing_publishes_nothing() -> None:
    sent = Recorder()
    output = AttemptOutput(sent, interval=0.01, cap=1_000)
    output.start()
    await output.close()
    assert sent.sent == []


async def test_text_past_the_cap_is_not_even_kept() -> None:
    """A program printing far more than the cap without a newline costs the cap, not more."""
    sent = Recorder()
    output = AttemptOutput(sent, interval=5, cap=100)
    output.start()
    for _ in range(1_000):
        output.write("stdout", "y" * 1_000)
    assert output.buffered == 101
    await output.close()
    assert sent.sent == [("stdout", 0, "y" * 100, True)]


async def test_a_line_that_fills_a_chunk_goes_out_before_its_end() -> None:
    sent = Recorder()
    output = AttemptOutput(sent, interval=0.01, cap=10 * CHUNK_CHARS)
    output.start()
    output.write("stdout", "z" * CHUNK_CHARS)
    await sent.until(1)
    assert sent.sent == [("stdout", 0, "z" * CHUNK_CHARS, False)]
    await output.close()
