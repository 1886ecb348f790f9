"""Every shipped benchmark definition loads its fixture copy (published columns) into prepared records."""

from __future__ import annotations

import json

import pytest

from eval.loaders import load_records, locate_files
from eval.registry import get_benchmark, load_spec_file, shipped_benchmarks
from mhpo_vl.errors import ConfigError, UserError
from tests.eval.fixtures import GSM8K_ROWS, WRITERS, write_gsm8k, write_jsonl, write_math500


def _load(name, tmp_path, **kw):
    WRITERS[name](tmp_path)
    return load_records(get_benchmark(name), data_dir=tmp_path, **kw)


def test_every_shipped_benchmark_has_a_fixture_and_loads(tmp_path):
    names = set(shipped_benchmarks())
    assert names == set(WRITERS) | {"reasoning_gym_arith"}
    for name in sorted(WRITERS):
        records = _load(name, tmp_path)
        assert records, name
        for r in records:
            assert {"id", "prompt", "answer", "answer_type", "images", "source"} <= set(r)
            assert isinstance(r["id"], str) and r["prompt"] and r["answer"]


def test_gsm8k_answer_after_hashes_and_row_index_ids(tmp_path):
    records = _load("gsm8k", tmp_path)
    assert [r["id"] for r in records] == ["0", "1", "2"]
    assert [r["answer"] for r in records] == ["7", "2000", "4.5"]
    assert records[0]["prompt"] == GSM8K_ROWS[0]["question"]
    assert records[0]["answer_type"] == "numeric" and records[0]["images"] == []


def test_gsm8k_bare_number_gold_accepted_else_clear_error(tmp_path):
    from tests.eval.fixtures import write_parquet

    write_parquet(tmp_path / "gsm8k" / "main" / "test-00000-of-00001.parquet",
                  [{"question": "q", "answer": "1,007"}, {"question": "q", "answer": "seven"}])
    with pytest.raises(UserError, match=r"test-00000-of-00001.parquet row 1: gsm8k: .*####"):
        load_records(get_benchmark("gsm8k"), data_dir=tmp_path)
    assert load_records(get_benchmark("gsm8k"), data_dir=tmp_path, limit=1)[0]["answer"] == "1007"


def test_math500_unique_id_latex_answers_and_subsets(tmp_path):
    records = _load("math500", tmp_path)
    assert records[0]["id"] == "test/precalculus/807.json"
    assert records[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert records[0]["meta"]["subsets"] == {"subject": "Precalculus", "level": "2"}


def test_mathvista_choice_and_free_form_rows(tmp_path):
    by_id = {r["id"]: r for r in _load("mathvista", tmp_path)}
    mc = by_id["1"]
    assert mc["answer_type"] == "choice" and mc["choices"] == ["120°", "145°", "160°"] and mc["answer"] == "145°"
    assert mc["prompt"].count("(B) 145°") == 1  # the query already lists the choices; not appended twice
    assert mc["images"][0].keys() == {"bytes"}
    side = by_id["2"]
    assert side["answer_type"] == "numeric" and side["meta"]["precision"] == 1 and side["meta"]["unit"] == "cm"
    assert "choices" not in side
    assert by_id["3"]["answer_type"] == "numeric" and "precision" not in by_id["3"]["meta"]
    assert mc["meta"]["subsets"]["question_type"] == "multi_choice"
    assert mc["meta"]["subsets"]["category"] == "math-targeted-vqa"


def test_mathvista_json_annotations_with_image_paths(tmp_path):
    folder = tmp_path / "mathvista"
    (folder / "images").mkdir(parents=True)
    from tests.eval.fixtures import png_bytes

    (folder / "images" / "1.jpg").write_bytes(png_bytes())
    annot = {"1": {"pid": "1", "image": "images/1.jpg", "choices": None, "unit": None, "precision": None,
                   "answer": "4", "question_type": "free_form", "answer_type": "integer", "query": "How many?"}}
    (folder / "testmini.json").write_text(json.dumps(annot))
    (record,) = load_records(get_benchmark("mathvista"), data_dir=tmp_path)
    assert record["images"] == [str((folder / "images" / "1.jpg").resolve())]
    (folder / "images" / "1.jpg").unlink()
    with pytest.raises(UserError, match="images/1.jpg"):
        load_records(get_benchmark("mathvista"), data_dir=tmp_path)


def test_geo3k_images_as_bytes_and_placeholder_removed(tmp_path):
    records = _load("geo3k", tmp_path)
    assert records[0]["prompt"] == "Find x." and records[0]["answer"] == "2 \\sqrt { 221 }"
    assert len(records[0]["images"]) == 1 and records[0]["images"][0]["bytes"][:4] == b"\x89PNG"
    assert records[0]["answer_type"] == "math" and records[0]["id"] == "0"


def test_mathverse_rows_per_version_and_options_kept_for_the_protocol(tmp_path):
    mv = {r["id"]: r for r in _load("mathverse", tmp_path)}
    assert len(mv) == 7  # sample_index is unique; problem_index is shared by a problem's versions
    assert mv["1"]["answer_type"] == "choice" and mv["1"]["answer"] == "D" and "choices" not in mv["1"]
    assert mv["1"]["meta"]["protocol"]["options"] == {"A": "40°", "B": "50°", "C": "60°", "D": "70°"}
    assert [mv[str(i)]["meta"]["subsets"]["problem_version"] for i in range(1, 6)] == [
        "Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only"]
    assert mv["5"]["prompt"].startswith("According to the question shown in the image")
    assert mv["7"]["answer_type"] == "math" and mv["7"]["meta"]["subsets"]["subfield"] == "Angle"


def test_mathvision_options_and_free_form(tmp_path):
    vis = {r["id"]: r for r in _load("mathvision", tmp_path)}
    assert vis["1"]["answer_type"] == "choice" and vis["1"]["choices"] == ["A", "B", "C", "D", "E"]
    assert "<image1>" not in vis["1"]["prompt"] and "(E) E" in vis["1"]["prompt"]
    assert vis["17"]["answer_type"] == "math" and "Choices" not in vis["17"]["prompt"]
    assert vis["21"]["meta"]["protocol"] == {"answer": "B", "options": ["$\\pi$", "$2 \\pi$", "$3 \\pi$",
                                                                         "$4 \\pi$", "$5 \\pi$"]}


def test_wemath_rows_sharing_an_id_get_unique_ids(tmp_path):
    records = _load("wemath", tmp_path)
    assert len(records) == 17 and len({r["id"] for r in records}) == 17
    assert [r["id"] for r in records[:4]] == ["2steps_1/2steps_1", "2steps_2/2steps_1", "2steps_3/2steps_1",
                                              "2steps_1/2steps_2"]
    first = records[0]
    assert first["choices"] == ["3 cm²", "4 cm²", "5 cm²", "6 cm²", "No correct answer"]
    assert first["answer"] == "B" and "(B) 4 cm²" in first["prompt"]
    assert first["meta"]["protocol"] == {"ID": "2steps_1", "key": "2steps_1", "answer": "B"}


def test_wemath_row_without_key_is_a_clear_error(tmp_path):
    from tests.eval.fixtures import WEMATH_ROWS, write_parquet

    write_parquet(tmp_path / "wemath" / "testmini.parquet", [{**WEMATH_ROWS[0], "key": None}])
    with pytest.raises(UserError, match="row 0: wemath: missing column 'key'"):
        load_records(get_benchmark("wemath"), data_dir=tmp_path)


def test_text_competition_sets(tmp_path):
    aime24 = _load("aime24", tmp_path)
    assert [r["id"] for r in aime24] == ["60", "61"] and aime24[1]["answer"] == "025"
    aime25 = _load("aime25", tmp_path)  # two opencompass files, no id column -> row index
    assert [(r["id"], r["answer"]) for r in aime25] == [("0", "70"), ("1", "588")]
    amc = _load("amc23", tmp_path)
    assert [r["answer"] for r in amc] == ["27", "0.5"]  # float64 gold answers
    (hmmt,) = _load("hmmt25", tmp_path)
    assert hmmt["id"] == "1" and hmmt["answer"].startswith("\\frac")


def test_prepared_sets_resolve_relative_images(tmp_path):
    records = _load("synthetic", tmp_path)
    assert records[0]["images"] == [str((tmp_path / "synthetic" / "images" / "a.png").resolve())]
    assert records[1]["answer_type"] == "choice" and records[1]["choices"] == ["circle", "square"]
    assert [r["answer_type"] for r in _load("easy_vqa", tmp_path)] == ["text", "choice"]


def test_reasoning_gym_is_generated_deterministically():
    spec = get_benchmark("reasoning_gym_arith")
    a = load_records(spec, limit=5)
    b = load_records(spec, limit=5)
    assert a == b and len(a) == 5 and a[0]["id"] == "0" and a[0]["answer_type"] == "numeric"


def test_data_path_may_be_data_dir_benchmark_folder_or_file(tmp_path):
    path = write_gsm8k(tmp_path)
    write_math500(tmp_path)
    spec = get_benchmark("gsm8k")
    for where in (tmp_path, tmp_path / "gsm8k", path):
        assert locate_files(spec, where) == [path]
    assert len(load_records(get_benchmark("math500"), data_dir=tmp_path / "math500")) == 3
    assert len(load_records(spec, data_dir=tmp_path, limit=2)) == 2


def test_missing_data_and_unknown_names_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no data file under"):
        load_records(get_benchmark("gsm8k"), data_dir=tmp_path)
    with pytest.raises(UserError, match="not found"):
        load_records(get_benchmark("gsm8k"), data_dir=tmp_path / "nope")
    with pytest.raises(UserError, match="unknown benchmark 'gsm9k'"):
        get_benchmark("gsm9k")


def test_duplicate_ids_and_bad_json_lines_name_the_line(tmp_path):
    write_jsonl(tmp_path / "math500" / "test.jsonl", [{"problem": "p", "answer": "1", "unique_id": "a"}] * 2)
    with pytest.raises(UserError, match=r"test.jsonl:2: math500: duplicate id 'a'"):
        load_records(get_benchmark("math500"), data_dir=tmp_path)
    (tmp_path / "math500" / "test.jsonl").write_text('{"problem": "p", "answer": "1"}\n{oops\n')
    with pytest.raises(UserError, match=r"test.jsonl:2: malformed JSON"):
        load_records(get_benchmark("math500"), data_dir=tmp_path)


def test_user_benchmark_yaml(tmp_path):
    write_jsonl(tmp_path / "mine" / "data.jsonl", [{"q": "1+1?", "gold": "2", "kind": "free", "key": "k1"}])
    yaml_path = tmp_path / "mine.yaml"
    yaml_path.write_text(
        "name: mine\nfiles: ['**/*.jsonl']\nfields: {id: key, prompt: q, answer: gold}\n"
        "prompt_format: 'Question: {q}'\nanswer_type: {field: kind, map: {free: numeric}}\n")
    (record,) = load_records(load_spec_file(yaml_path), data_dir=tmp_path)
    assert record == {"id": "k1", "prompt": "Question: 1+1?", "answer": "2", "images": [], "source": "mine",
                      "split": "test", "meta": {}, "answer_type": "numeric"}
    assert get_benchmark(str(yaml_path)).name == "mine"


@pytest.mark.parametrize("text, match", [
    ("name: x\nfiles: ['*.jsonl']\nanswr_type: math\n", "unknown key 'answr_type'.*answer_type"),
    ("name: x\nfiles: ['*.jsonl']\nanswer_type: maths\n", "'maths' is not one of"),
    ("name: x\nfiles: ['*.jsonl']\nadapter: nope\n", "adapter: unknown 'nope'"),
    ("name: x\nfiles: ['*.jsonl']\nanswer_patterns: ['(a)(b)']\n", "one capture group"),
    ("name: x\nfiles: [oops\n", "invalid YAML"),
])
def test_bad_user_yaml_names_the_problem(tmp_path, text, match):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_spec_file(path)
