import pytest

from sidbench.cli import main


def test_unknown_verb_suggests_nearest(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generat"])
    assert exc.value.code == 2
    assert "Did you mean 'generate'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, suggestion", [
    (["ls", "--debgu"], "--debug"),
    (["env", "--jsn"], "--json"),
    (["eval", "--imagse", "x"], "--images"),
    (["generate", "--nmu-steps", "4", "--out", "o"], "--num-steps"),
    (["refstats", "d", "--otu", "x.npz"], "--out"),
])
def test_unknown_option_suggests_nearest_of_the_verb(capsys, argv, suggestion):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sidbench {argv[0]}: error: unrecognized arguments: ")
    assert f"Did you mean '{suggestion}'?" in err and err.count("\n") == 1


def test_invalid_choice_is_not_called_an_unknown_verb(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--sampler", "hune", "--out", "o"])
    err = capsys.readouterr().err
    assert "unknown verb" not in err
    assert "--sampler: invalid choice 'hune'. Did you mean 'heun'? Choose from: heun, onestep." in err


def test_os_error_at_run_time_is_one_line(capsys, monkeypatch):
    import errno

    import sidbench.api

    def full(**kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/x/out")

    monkeypatch.setattr(sidbench.api, "env", full)
    assert main(["env"]) == 1
    err = capsys.readouterr().err
    assert err == "sidbench env: error: No space left on device (/x/out) (--debug shows where)\n"


def test_env_json_runs(capsys):
    assert main(["env", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"torch"' in out and '"assets"' in out


def test_user_error_is_one_line_without_traceback(capsys, tmp_path):
    rc = main(["generate", "--network", str(tmp_path / "missing"), "--num-images", "2",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("sidbench generate: error:") and err.count("\n") == 1
    assert "Traceback" not in err


def test_debug_flag_shows_the_exception(tmp_path):
    from sidbench.errors import SidbenchError

    with pytest.raises(SidbenchError):
        main(["--debug", "generate", "--network", str(tmp_path / "missing"), "--num-images", "2",
              "--out", str(tmp_path / "o")])


def test_ls_lists_suites(capsys):
    assert main(["ls", "suites"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "cifar10-uncond" in out
