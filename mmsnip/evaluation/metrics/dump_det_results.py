# Copyright (c) mmsnip contributors. All rights reserved.
import pickle

from mmdet.evaluation import DumpDetResults as MMDetDumpDetResults
from mmengine.logging import print_log

from mmsnip.utils.fileio import atomic_open, checked_write


class DumpDetResults(MMDetDumpDetResults):
    """mmdet's ``DumpDetResults`` (``tools/test.py --out``), the file
    written whole or not at all.

    mmengine's ``dump`` writes the pickle in place, so a disk that fills,
    or a kill, at the end of a long test left a truncated file at the
    final path (and an ``OSError`` traceback). Here it goes through
    :func:`~mmsnip.utils.fileio.atomic_open`; a failed write is a
    ``UserInputError`` naming the file. Same content: the results list,
    pickle protocol 2 (as mmengine's pickle handler writes it). Not
    registered (mmdet's name stays mmdet's in configs); ``tools/test.py``
    builds it.
    """

    def compute_metrics(self, results: list) -> dict:
        path = self.out_file_path
        with checked_write(path), atomic_open(path) as f:
            pickle.dump(results, f, protocol=2)
        print_log(f'Results has been saved to {path}.', logger='current')
        return {}
