import pytest

from sidbench.cli import main


def test_unknown_verb_suggests_nearest(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generat"])
    assert exc.value.code == 2
    assert "Did you mean 'generate'" in capsys.readouterr().err


def test_unknown_option_suggests_nearest(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ls", "--jsn"])
    assert exc.value.code == 2


def test_env_json_runs(capsys):
    assert main(["env", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"torch"' in out and '"assets"' in out
