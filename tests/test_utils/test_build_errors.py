# Copyright (c) mmsnip contributors. All rights reserved.
"""A failed build of a config entry names the entry (one line), and only
errors the config explains are turned (docs/reliability.md)."""
import pytest
from mmengine.config import Config
from mmengine.registry import build_from_cfg

from mmsnip.registry import MODELS, TRANSFORMS
from mmsnip.utils import register_all_modules
from mmsnip.utils.build_errors import config_entry_problem
from mmsnip.utils.config_tree import typed_entries

register_all_modules()


def _error(build, cfg):
    with pytest.raises(Exception) as info:
        build(cfg)
    return info.value


def _config(**entries):
    return Config(dict(
        model=dict(type='RetinaNet', backbone=dict(type='ResNet', depth=18)),
        train_dataloader=dict(dataset=dict(pipeline=[
            dict(type='LoadImageFromFile'), dict(type='CropChip')])),
        **entries))


def test_typed_entries_walk_the_whole_config():
    assert [p for p, _ in typed_entries(_config())] == [
        'model', 'model.backbone',
        'train_dataloader.dataset.pipeline[0]',
        'train_dataloader.dataset.pipeline[1]']


def test_unknown_type_names_the_entry_and_close_names():
    cfg = _config()
    cfg.train_dataloader.dataset.pipeline[1].type = 'CropChipp'
    error = _error(lambda c: build_from_cfg(c, TRANSFORMS),
                   dict(type='CropChipp'))
    assert config_entry_problem(cfg, error) == (
        "train_dataloader.dataset.pipeline[1]: type 'CropChipp' is not in "
        "the mmsnip::transform registry; did you mean 'CropChip'? (a "
        'module of your own: register it and import it with '
        'custom_imports)')


def test_wrong_or_missing_keyword_names_the_entry():
    cfg = _config()
    cfg.model.backbone = dict(type='mmdet.ResNet', dept=18)
    error = _error(lambda c: MODELS.build(c), dict(cfg.model.backbone))
    assert config_entry_problem(cfg, error) == (
        "model.backbone: ResNet takes no argument 'dept'; did you mean "
        "'depth' or 'deep_stem'?")
    cfg.model.backbone = dict(type='ResNet')
    error = _error(lambda c: MODELS.build(c), dict(cfg.model.backbone))
    assert config_entry_problem(cfg, error) == (
        "model.backbone: ResNet needs the argument 'depth', which the "
        'entry does not set')


def test_a_subclass_failing_in_its_parents_init_is_named():
    """A user's ResNet subclass without its own __init__: Python names
    the parent (`ResNet.__init__()`), the config the subclass."""
    from mmdet.models import ResNet

    @MODELS.register_module(force=True)
    class _MyResNet(ResNet):
        pass

    cfg = _config()
    cfg.model.backbone = dict(type='_MyResNet', dept=18)
    error = _error(lambda c: MODELS.build(c), dict(cfg.model.backbone))
    assert str(error).startswith('ResNet.__init__() got an unexpected')
    assert config_entry_problem(cfg, error) == (
        "model.backbone: ResNet takes no argument 'dept'; did you mean "
        "'depth' or 'deep_stem'?")


def test_errors_the_config_does_not_explain_keep_their_traceback():
    cfg = _config()
    # a type or keyword of a dict built by code, not in the config
    assert config_entry_problem(cfg, _error(
        lambda c: build_from_cfg(c, TRANSFORMS), dict(type='Nope'))) is None
    assert config_entry_problem(cfg, _error(
        lambda c: MODELS.build(c), dict(type='ResNet', depth=18,
                                        dept=1))) is None
    # a bad value (not a keyword): the class's own error
    cfg.model.backbone.depth = 19
    assert config_entry_problem(cfg, _error(
        lambda c: MODELS.build(c), dict(cfg.model.backbone))) is None
    assert config_entry_problem(cfg, KeyError('depth')) is None
    assert config_entry_problem(cfg, ValueError('x')) is None
