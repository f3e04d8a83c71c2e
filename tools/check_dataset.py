# Copyright (c) mmsnip contributors. All rights reserved.
"""Audit the COCO annotation files and images of a config.

    python tools/check_dataset.py CONFIG [--full-decode] [--workers N] \
        [--keys train_dataloader val_dataloader] [--max-per-kind 20] \
        [--cfg-options ...]

Checks every COCO annotation file the config uses (train / val / test
datasets, wrapped or not, and the evaluators' ``ann_file``) and every image
they list (``mmsnip.utils.dataset_audit``; docs/reliability.md lists the
checks): duplicate ids, dangling references, bad boxes, category order
across files, and image files whose size (read from the header) disagrees
with the annotation. ``--full-decode`` decodes every image too (finds
truncated files). Prints each problem and a summary; exit status 0 if
there is no error (warnings allowed), 2 with one ``error:`` line if there
is. A dataloader that gives no COCO file (``val_dataloader = None``, a
non-COCO dataset) is named in a line saying nothing was checked for it;
an error when it was asked for with ``--keys``.
"""
import os

from mmengine.config import DictAction

from mmsnip.utils.cli import ArgumentParser, non_negative_int
from mmsnip.utils.dataset_audit import (ERROR, audit_config, summary,
                                        unchecked_loaders)
from mmsnip.utils.preflight import (DATALOADER_KEYS, UserInputError,
                                    check_data_paths, load_config,
                                    registry_classes, run_cli)


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--full-decode',
        action='store_true',
        help='decode every image, not just its header')
    parser.add_argument(
        '--workers',
        type=non_negative_int,
        default=0,
        help='processes reading images (0: this one)')
    parser.add_argument(
        '--keys',
        nargs='+',
        choices=list(DATALOADER_KEYS),
        help='dataloaders to check (with their evaluators; default: all; '
        'one named here that gives no COCO file is an error)')
    parser.add_argument(
        '--max-per-kind',
        type=non_negative_int,
        default=20,
        help='problems printed per kind (0: all)')
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main():
    args = parse_args()
    from mmsnip.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config, args.cfg_options)
    keys = args.keys or list(DATALOADER_KEYS)
    check_data_paths(cfg, keys, audit=False)
    unchecked = unchecked_loaders(cfg, keys)
    problems = audit_config(
        cfg,
        keys,
        default_classes=registry_classes,
        images=True,
        full_decode=args.full_decode,
        workers=args.workers or 0,
        progress=not args.no_progress)
    shown = {}
    for p in problems:
        shown[p.kind] = shown.get(p.kind, 0) + 1
        if args.max_per_kind and shown[p.kind] > args.max_per_kind:
            continue
        print(f'{p.severity}: {p}' if p.severity != ERROR else f'- {p}')
    hidden = sum(max(0, n - args.max_per_kind) for n in shown.values()) \
        if args.max_per_kind else 0
    if hidden:
        print(f'... {hidden} more not shown (--max-per-kind 0 shows all)')
    for key, reason in unchecked.items():
        print(f'{key}: nothing checked: it {reason}')
    n_errors = sum(p.severity == ERROR for p in problems)
    print(f'{os.path.basename(args.config)}: {summary(problems)}')
    asked = [k for k in unchecked if args.keys]
    if asked:
        raise UserInputError(
            f'nothing was checked for {", ".join(asked)} (--keys): it '
            f'{unchecked[asked[0]]}; name dataloaders that have a COCO '
            f'dataset' + (f' (and the dataset has {n_errors} error(s), '
                          'listed above)' if n_errors else ''))
    if n_errors:
        raise UserInputError(
            f'the dataset of "{args.config}" has {n_errors} error(s) (listed '
            'above)')


if __name__ == '__main__':
    run_cli(main)
