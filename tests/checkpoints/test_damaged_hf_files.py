"""A Hugging Face directory or weight file that is damaged or of another format stops `inspect`
and `convert` with one line naming the file and the problem (and no export, no card)."""

from export_helpers import small_config

from d2v_speech.checkpoints import export_huggingface, main
from d2v_speech.nn import Data2VecAudioModel


def test_damaged_hf_files_stop_with_one_line_naming_the_file(tmp_path, capsys):
    directory = export_huggingface(Data2VecAudioModel(small_config()), tmp_path / "hf")
    config = (directory / "config.json").read_text()
    weights = directory / "model.safetensors"
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(b"\x00" * 64)
    cases = [
        (directory / "config.json", "{", "not valid JSON"),
        (directory / "config.json", "[1, 2]", "holds a JSON list, not an object"),
        (weights, "not tensors", "not a readable safetensors file"),
        (lone, None, "not a readable safetensors file"),
    ]
    for path, content, problem in cases:
        (directory / "config.json").write_text(config)
        if content is not None:
            path.write_text(content)
        source = lone if path == lone else directory
        assert main(["inspect", str(source)]) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and str(path) in err and problem in err, err
    weights.unlink()
    (directory / "config.json").write_text(config)
    (directory / "pytorch_model.bin").write_text("a text file, not weights\n")
    assert main(["convert", str(directory), str(tmp_path / "out.pt")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert str(directory / "pytorch_model.bin") in err and "a text file, not a PyTorch" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["hf", "lone.safetensors"]
