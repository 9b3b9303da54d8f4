#!/usr/bin/python3
"""Progress of one benchmark program, from its output read on stdin (bench/run.sh).

Usage: <program> 2>&1 | bench/progress.py KIND LABEL LOG [TOTAL]

Every line read is written to LOG (the program's raw output stays there), and the
terminal gets a short progress display instead: on a terminal, one line rewritten
every second; otherwise (a pipe, a CI log) one line at every quarter of the work.
Both end with one summary line. Standard library only.

KIND says how to count the work:
  gbench  a Google Benchmark program run with --v=2: every "Running <name> for <n>"
          line starts a timed run; a run of the same benchmark with a larger
          iteration count is the iteration search of the same repetition, any
          other starts a repetition. TOTAL: benchmarks x repetitions.
  peer    lines "[progress] <done>/<total> <name>" (bench/peers/torch_mha.py --progress).
  cmake   CMake's "[ 45%] ..." build lines.
The remaining time is the mean time of a finished step times the steps left: under
random interleaving the finished steps are a random sample of all of them.
"""

import os
import re
import select
import shutil
import sys
import time

GBENCH_RUN = re.compile(r"LOG\(2\): Running (\S+) for (\d+)")
PEER_STEP = re.compile(r"^\[progress\] (\d+)/(\d+) (.*)$")
CMAKE_STEP = re.compile(r"^\[\s*(\d+)%\]")
QUARTERS = 4  # status lines when the output is not a terminal


def fmt_duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    def __init__(self, kind, label, total):
        self.kind, self.label = kind, label
        self.total = total          # steps; 100 for cmake (percent)
        self.started = 0            # steps started (gbench: repetitions)
        self.done = 0               # steps finished
        self.current = ""           # what runs now
        self.benchmarks = set()
        self.last_name, self.last_iters = None, {}
        self.start = time.monotonic()
        self.first_step = None      # time of the first step (after the program's start-up)

    def feed(self, line):
        if self.kind == "gbench":
            m = GBENCH_RUN.search(line)
            if not m:
                return
            name, iters = m.group(1), int(m.group(2))
            if name != self.last_name or iters <= self.last_iters.get(name, 0):
                self.started += 1   # a new repetition (else: the iteration search goes on)
            self.last_name, self.last_iters[name] = name, iters
            self.benchmarks.add(name)
            self.done = self.started - 1
            self.current = re.sub(r"(/process_time)?(/real_time)?$", "", name)
        elif self.kind == "peer":
            m = PEER_STEP.match(line)
            if not m:
                return
            self.done, self.total, self.current = int(m.group(1)), int(m.group(2)), m.group(3)
        else:
            m = CMAKE_STEP.match(line)
            if not m:
                return
            self.done = int(m.group(1))
            self.current = line[m.end():].strip()
        if self.first_step is None:
            self.first_step = time.monotonic()
        self.total = max(self.total, self.done, 1)

    def finish(self):
        if self.kind == "gbench":
            self.done = self.started
        self.current = ""

    def fraction(self):
        return min(1.0, self.done / self.total) if self.total else 0.0

    def remaining(self):
        if self.first_step is None or self.done <= 0:
            return None
        per_step = (time.monotonic() - self.first_step) / self.done
        return per_step * max(0, self.total - self.done)

    def status(self):
        elapsed = fmt_duration(time.monotonic() - self.start)
        left = self.remaining()
        left = "~?" if left is None else "~" + fmt_duration(left)
        if self.kind == "cmake":
            count = f"{self.done}%"
        else:
            unit = "repetitions" if self.kind == "gbench" else "steps"
            count = f"{self.done}/{self.total} {unit} ({100 * self.fraction():.0f}%)"
        return f"{self.label}: {count}  {elapsed} elapsed, {left} left  {self.current}"

    def summary(self):
        elapsed = fmt_duration(time.monotonic() - self.start)
        if self.kind == "gbench":
            return (f"{self.label}: {self.done} repetitions of {len(self.benchmarks)} "
                    f"benchmarks in {elapsed}")
        if self.kind == "peer":
            return f"{self.label}: {self.done} steps in {elapsed}"
        return f"{self.label}: done in {elapsed}"


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    kind, label, log_path = sys.argv[1:4]
    if kind not in ("gbench", "peer", "cmake"):
        sys.exit(f"progress.py: unknown kind {kind!r}")
    total = int(sys.argv[4]) if len(sys.argv) == 5 else 0
    progress = Progress(kind, label, 100 if kind == "cmake" else total)
    tty = sys.stdout.isatty()
    width = shutil.get_terminal_size((100, 24)).columns - 1
    shown_quarter, shown_text = 0, None

    def show(final=False):
        nonlocal shown_quarter, shown_text
        if tty:
            text = (progress.summary() if final else progress.status())[:width]
            if text == shown_text and not final:
                return
            shown_text = text
            sys.stdout.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            sys.stdout.write(progress.summary() + "\n")
        else:
            quarter = int(progress.fraction() * QUARTERS)
            if 0 < quarter < QUARTERS and quarter > shown_quarter:
                shown_quarter = quarter
                sys.stdout.write(progress.status().rstrip() + "\n")
        sys.stdout.flush()

    fd = sys.stdin.fileno()
    pending = b""
    with open(log_path, "ab") as log:
        while True:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    progress.feed(line.decode("utf-8", "replace").rstrip("\r"))
            show()
        if pending:
            progress.feed(pending.decode("utf-8", "replace"))
    progress.finish()
    show(final=True)


if __name__ == "__main__":
    main()
