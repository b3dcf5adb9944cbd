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


def test_user_error_is_one_line_without_traceback(capsys, tmp_path):
    rc = main(["generate", "--teacher", str(tmp_path / "missing"), "--num", "2",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("sidbench generate: error:") and err.count("\n") == 1
    assert "Traceback" not in err


def test_debug_flag_shows_the_exception(tmp_path):
    from sidbench.errors import SidbenchError

    with pytest.raises(SidbenchError):
        main(["--debug", "generate", "--teacher", str(tmp_path / "missing"), "--num", "2",
              "--out", str(tmp_path / "o")])


def test_ls_lists_suites(capsys):
    assert main(["ls", "suites"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "cifar10-uncond" in out
