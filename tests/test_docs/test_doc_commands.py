# Copyright (c) mmsnip contributors. All rights reserved.
"""The tool commands the docs (and the GPU benchmark script) show parse with
the tools' own argument parsers: a renamed or unknown option, a bad choice
or a missing required argument breaks this test, not a reader's run.

Commands are the ``python tools/...`` lines of shell blocks (fenced
``bash``, ``shell``, ``sh`` or untagged; the script itself, its
``"${NAME[@]}"`` arrays expanded) and the inline
``tools/...py`` spans of the prose that give an option. Each command is
parsed in this process by the tool's ``parse_args(argv)``; no tool runs.
In the doc's words, placeholders (``CONFIG``, ``CKPT``, ``S``, ``"$OUT"``)
become ``'1'`` (a valid string and number), ``[--opt X]`` is parsed with
the option, ``a | b`` and ``a|b`` once per alternative, ``...`` is dropped
and a shell operator (``||``, ``&&``, ``;``, ``>``) ends the command.

An inline span of options alone, without values or positionals, such as
``tools/test.py --tta``, names options rather than showing a command: each
of them must be one the tool knows.
"""
import argparse
import itertools
import os
import os.path as osp
import re
import shlex
from unittest import mock

import pytest

from conftest import REPO_ROOT, load_tool

# doc -> at least this many tool commands in it
DOCS = {'README.md': 3, 'docs/autofocus.md': 12, 'docs/benchmarks.md': 16,
        'docs/chips.md': 5, 'docs/custom_dataset.md': 14,
        'docs/demo_data.md': 3, 'docs/get_started.md': 5,
        'docs/reliability.md': 2, 'docs/snip_assignment.md': 1,
        'docs/sniper.md': 2, 'tools/misc/gpu_benchmarks.sh': 3}
# A placeholder: CONFIG, CKPT, OUT_DIR, S, ANN.json, $OUT, ${CKPT}.
PLACEHOLDER = re.compile(r'^(\$\{?\w+\}?|[A-Z][A-Z0-9_]*(\.[a-z]+)?)$')
SHELL_OPERATORS = ('||', '&&', ';', '>', '>>', '2>&1', '&')
MAX_VARIANTS = 64  # argument lists per command at most


def _tool_commands(text):
    """``[tool, args...]`` of each ``python tools/...`` line of a shell
    block (continuations joined; ``"$PY" tools/...`` in scripts)."""
    for line in text.replace('\\\n', ' ').splitlines():
        if 'tools/' not in line:
            continue
        words = shlex.split(line.split(' #', 1)[0])
        while words and '=' in words[0]:  # OMP_NUM_THREADS=1 ...
            words.pop(0)
        if words[:2] in (['taskset', '-c'], ['nice', '-n']):
            words = words[3:]  # taskset -c 0 python ...
        for at, word in enumerate(words[:-1]):
            if word in ('python', '$PY') and \
                    words[at + 1].startswith('tools/'):
                yield words[at + 1:]
                break


def _inline_commands(text):
    """``[tool, args...]`` of each inline code span that runs a tool with
    at least one option: ``python tools/x.py --a 1`` or ``tools/x.py
    --a``."""
    for span in re.findall(r'(?<!`)`([^`]+)`(?!`)', text):
        if '\n\n' in span:  # not a span: backticks of two paragraphs
            continue
        found = re.search(r'(?:^|\bpython )(tools/[\w/]+\.py)\b(.*)$',
                          ' '.join(span.split()))
        if not found:
            continue
        args = shlex.split(found.group(2))
        if any(a.startswith('--') for a in args):
            yield [found.group(1)] + args


def _split_fences(text):
    """``(shell blocks, prose)`` of a Markdown text: the bodies of its
    fenced blocks tagged bash, shell, sh or nothing; the text outside
    every fenced block."""
    blocks, prose, body, lang = [], [], None, None
    for line in text.splitlines(keepends=True):
        fence = re.match(r'^\s*```\s*(\w*)', line)
        if body is None and fence:
            body, lang = [], fence.group(1)
        elif body is not None and fence:
            if lang in ('bash', 'shell', 'sh', ''):
                blocks.append(''.join(body))
            body = None
        elif body is not None:
            body.append(line)
        else:
            prose.append(line)
    return blocks, ''.join(prose)


def _expand_arrays(script):
    """``script`` with each ``"${NAME[@]}"`` replaced by the words of its
    ``NAME=(...)`` definition in the script (shared options of several
    commands)."""
    arrays = {name: ' '.join(body.split()) for name, body in re.findall(
        r'^(\w+)=\(([^)]*)\)', script, re.M)}
    return re.sub(r'"?\$\{(\w+)\[@\]\}"?',
                  lambda m: arrays.get(m.group(1), m.group(0)), script)


def _commands(path):
    """``(inline, [tool, args...])`` of each tool command of a doc."""
    text = open(path, encoding='utf-8').read()
    if path.endswith('.sh'):
        blocks, prose = [_expand_arrays(text)], ''
    else:
        blocks, prose = _split_fences(text)
    for block in blocks:
        for command in _tool_commands(block):
            yield False, command
    for command in _inline_commands(prose):
        yield True, command


def _tokens(args):
    """The doc's words with ``[``, ``]`` and ``|`` as tokens of their own,
    up to the first shell operator."""
    out = []
    for word in args:
        if word in SHELL_OPERATORS:
            break
        opens = len(word) - len(word.lstrip('['))
        closes = len(word) - len(word.rstrip(']'))
        core = word[opens:len(word) - closes]
        out += ['['] * opens
        if core == '|':
            out.append('|')
        elif core and core != '...':
            out.append(core)
        out += [']'] * closes
    return out


def _argvs(args):
    """The argument lists a doc's words stand for (see the module
    docstring)."""
    tokens = _tokens(args)

    def alternatives(at):
        """(argument lists, next position) of ``seq ('|' seq)*``."""
        found = []
        while True:
            variants, at = sequence(at)
            found += variants
            if at < len(tokens) and tokens[at] == '|':
                at += 1
                continue
            return found[:MAX_VARIANTS], at

    def sequence(at):
        variants = [[]]
        while at < len(tokens) and tokens[at] not in ('|', ']'):
            if tokens[at] == '[':
                options, at = alternatives(at + 1)
                at += 1  # the ']'
            else:
                options = [[word] if PLACEHOLDER.fullmatch(word) is None
                           else ['1'] for word in tokens[at].split('|')] \
                    if not tokens[at].startswith('-') else [[tokens[at]]]
                at += 1
            variants = [v + o for v, o in itertools.product(variants,
                                                            options)]
            variants = variants[:MAX_VARIANTS]
        return variants, at

    variants, at = alternatives(0)
    assert at == len(tokens), f'unbalanced [ ] in {shlex.join(args)}'
    return variants


class _Captured(Exception):
    pass


def _parser(tool) -> argparse.ArgumentParser:
    """The top-level parser that ``tool``'s ``parse_args`` builds."""
    found = []

    def capture(self, args=None, namespace=None):
        found.append(self)
        raise _Captured

    with mock.patch.object(argparse.ArgumentParser, 'parse_args', capture):
        try:
            load_tool(tool).parse_args([])
        except _Captured:
            pass
    return found[0]


def _parse(tool, argv, capsys):
    """None if ``tool``'s parser takes ``argv``; else its error."""
    module = load_tool(tool)
    if not hasattr(module, 'parse_args'):
        return 'no parse_args(argv) to check the command with'
    environ = dict(os.environ)
    try:
        module.parse_args(argv)
    except SystemExit as e:
        err = capsys.readouterr().err.strip().splitlines()
        return err[-1] if err else f'exit {e.code}'
    finally:  # tools/train.py and test.py set LOCAL_RANK
        os.environ.clear()
        os.environ.update(environ)
    return None


def _problems(path, capsys):
    """``(number of commands, errors)`` of a doc."""
    commands, bad = 0, []
    for inline, (tool, *args) in _commands(path):
        commands += 1
        if inline and all(t.startswith('-') or t in '[|]'
                          for t in _tokens(args)):  # names options
            known = _parser(tool)._option_string_actions
            unknown = [a.split('=')[0] for a in args
                       if a.startswith('--') and a.split('=')[0] not in known]
            if unknown:
                bad.append(f'`{tool} {shlex.join(args)}`: unknown '
                           f'{", ".join(unknown)}')
            continue
        for argv in _argvs(args):
            error = _parse(tool, argv, capsys)
            if error:
                bad.append(f'{tool} {shlex.join(argv)}: {error}')
    return commands, bad


@pytest.mark.parametrize('doc', sorted(DOCS))
def test_doc_commands_parse(doc, capsys):
    commands, bad = _problems(osp.join(REPO_ROOT, doc), capsys)
    assert commands >= DOCS[doc]
    assert not bad, '\n'.join(bad)


@pytest.mark.parametrize('text,error', [
    ('```bash\npython tools/benchmark.py loader CFG --step-seconds S\n```',
     '--out-dir'),
    ('Run `tools/benchmark.py loader CFG\n--step-seconds S` to see.',
     '--out-dir'),
    ('```bash\npython tools/benchmark.py infer CFG CKPT --out-dir D \\\n'
     '    [--methods single zoom]\n```', "invalid choice: 'zoom'"),
    ('`python tools/benchmark_chips.py --mode table|tables`', 'tables'),
    ('```\npython tools/benchmark_chips.py --no-such-flag\n```',
     '--no-such-flag'),
    ('```sh\npython tools/benchmark_chips.py [--chips 4 | --chipz 4]\n```',
     '--chipz'),
    ('with `tools/test.py --ttta` on', '--ttta'),
])
def test_a_bad_command_fails(text, error, tmp_path, capsys):
    """The check itself: each of these doc snippets is caught."""
    doc = tmp_path / 'doc.md'
    doc.write_text(text)
    commands, bad = _problems(str(doc), capsys)
    assert commands == 1
    assert len(bad) == 1 and error in bad[0], bad


def test_good_commands_pass(tmp_path, capsys):
    doc = tmp_path / 'doc.md'
    doc.write_text(
        '```bash\nOMP_NUM_THREADS=1 python tools/benchmark_chips.py \\\n'
        '    [--num-images 5000] [--workers N]  # a comment\n'
        'python tools/benchmark_chips.py [--chips 4 | --seed 1] || exit 1\n'
        '```\n```python\npython tools/benchmark_chips.py --bad\n```\n'
        'and `tools/benchmark.py loader CONFIG --out-dir OUT '
        '--step-seconds S`, `tools/benchmark_chips.py --mode '
        'table|merge`, `tools/test.py --tta`, but not '
        '`tools/benchmark.py train` (a name).\n')
    commands = [c for _, c in _commands(str(doc))]
    assert [c[:2] for c in commands] == [
        ['tools/benchmark_chips.py', '[--num-images'],
        ['tools/benchmark_chips.py', '[--chips'],
        ['tools/benchmark.py', 'loader'],
        ['tools/benchmark_chips.py', '--mode'],
        ['tools/test.py', '--tta']]
    assert _argvs(commands[1][1:]) == [['--chips', '4'], ['--seed', '1']]
    assert _argvs(commands[3][1:]) == [['--mode', 'table'],
                                       ['--mode', 'merge']]
    assert _problems(str(doc), capsys) == (5, [])
