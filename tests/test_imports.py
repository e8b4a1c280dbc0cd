"""The one way a configuration names code outside the project: import paths."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest
import torch

from infoopt.imports import ImportPathError, distribution_of, import_path, is_import_path


def test_both_forms_name_the_same_object():
    assert import_path("torch.optim.RAdam") is torch.optim.RAdam
    assert import_path("torch.optim:RAdam") is torch.optim.RAdam
    assert import_path("torch.nn:functional.relu") is torch.nn.functional.relu


def test_registry_names_are_not_import_paths():
    assert not is_import_path("sgd")
    assert is_import_path("torch.optim.SGD")
    assert is_import_path("mine:build")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("nosuchpackage.Opt", "no module named 'nosuchpackage'"),
        ("torch.optim.NoSuchThing", "'torch.optim' has no attribute 'NoSuchThing'"),
        ("torch.nn:functional.nothing", "'torch.nn.functional' has no attribute 'nothing'"),
        ("torch.optim.", "is not an import path"),
        (":build", "is not an import path"),
        ("a:b:c", "is not an import path"),
    ],
)
def test_a_missing_part_is_named_in_one_line(path, expected):
    with pytest.raises(ImportPathError, match=expected) as error:
        import_path(path)
    assert "\n" not in str(error.value)


def test_a_module_that_fails_on_import_is_reported(tmp_path, monkeypatch):
    (tmp_path / "broken_user_module.py").write_text("raise RuntimeError('half-written')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportPathError, match="RuntimeError: half-written"):
        import_path("broken_user_module:build")
    sys.modules.pop("broken_user_module", None)


def test_distribution_names_the_installed_package(tmp_path, monkeypatch):
    assert distribution_of("torch.optim.RAdam") == {
        "distribution": "torch",
        "version": metadata.version("torch"),
    }
    (tmp_path / "user_only_module.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert distribution_of("user_only_module.x") == {"distribution": None, "version": None}
