"""Long work says what it is waiting for: stage lines off a terminal (CI logs, pipes)."""

from __future__ import annotations

import io

from gtracd.ui.progress import Stages


def test_stages_print_one_line_per_stage_off_a_terminal():
    lines: list[str] = []
    with Stages("gtracd: preparing m", ["reading", "[/x] writing"], log=lines.append, stream=io.StringIO()) as st:
        st.next()
        st.next()
    assert lines[0] == "gtracd: preparing m: reading (1/2) ..."
    assert lines[1].startswith("gtracd: preparing m: reading done in ") and lines[1].endswith("[/x] writing (2/2) ...")
    assert lines[2].startswith("gtracd: preparing m: [/x] writing done in ") and len(lines) == 3


def test_stages_draw_a_progress_bar_on_a_terminal():
    from rich.console import Console

    out = io.StringIO()
    st = Stages("gtracd: preparing m", ["reading", "[/x] writing"], log=lambda m: None, stream=out)
    st._console = Console(file=out, force_terminal=True, width=100)
    with st:
        st.next()
        st.next()
    text = out.getvalue()
    assert "preparing m: reading" in text and "0/2" in text  # the bar, from its first stage...
    assert "preparing m: done" in text and "2/2" in text  # ...to the end
