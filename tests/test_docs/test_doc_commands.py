# Copyright (c) mmsnip contributors. All rights reserved.
"""The commands the benchmark, AutoFocus and custom-data docs (and the GPU
benchmark script) show name only options their tools (and subcommands)
know: a renamed flag breaks this test, not a reader's run."""
import os.path as osp
import re
import shlex

import pytest

from conftest import REPO_ROOT, run_tool

SUBCOMMANDS = {'tools/benchmark.py': ('train', 'loader', 'infer')}


def _tool_commands(block):
    """``[tool, args...]`` of each ``python tools/...`` line of a shell
    block (continuations joined; ``"$PY" tools/...`` in scripts)."""
    for line in block.replace('\\\n', ' ').splitlines():
        words = shlex.split(line.split('#', 1)[0])
        while words and '=' in words[0]:  # OMP_NUM_THREADS=1 ...
            words.pop(0)
        if words[:2] in (['taskset', '-c'], ['nice', '-n']):
            words = words[3:]  # taskset -c 0 python ...
        for at, word in enumerate(words[:-1]):
            if word in ('python', '$PY') and \
                    words[at + 1].startswith('tools/'):
                yield words[at + 1:]
                break


def _commands(path):
    text = open(path, encoding='utf-8').read()
    if path.endswith('.sh'):
        yield from _tool_commands(text)
        return
    for block in re.findall(r'```(?:bash|shell)\n(.*?)```', text, re.S):
        yield from _tool_commands(block)


# doc -> at least this many tool commands in it
DOCS = {'docs/benchmarks.md': 8, 'docs/autofocus.md': 8,
        'docs/custom_dataset.md': 12, 'tools/misc/gpu_benchmarks.sh': 2}


@pytest.mark.parametrize('doc', sorted(DOCS))
def test_doc_commands_name_known_options(doc):
    commands = list(_commands(osp.join(REPO_ROOT, doc)))
    assert len(commands) >= DOCS[doc]
    helps = {}
    for tool, *args in commands:
        sub = args[0] if args and args[0] in SUBCOMMANDS.get(tool, ()) \
            else None
        key = (tool, sub)
        if key not in helps:
            helps[key] = run_tool([tool] + ([sub] if sub else []) +
                                  ['--help']).stdout
        flags = {w.split('=')[0] for w in args if w.startswith('--')}
        unknown = sorted(f for f in flags
                         if not re.search(re.escape(f) + r'\b', helps[key]))
        assert not unknown, (tool, sub, unknown)
