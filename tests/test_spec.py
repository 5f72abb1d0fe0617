"""Job specs (YAML, interpolation, validation), target resolution and secret masking."""

from __future__ import annotations

import datetime as dt
import logging
import textwrap
import time
from pathlib import Path

import pytest

from doge_dist import DataOnlineGenerator
from doge_dist.cli._commands import parse_param, prepare_model
from doge_dist.cli._mask import Masker, MaskingFormatter, mask_url_passwords
from doge_dist.cli._spec import JobSpec, SpecError, load_spec, parse_spec_text, resolve_timestamp
from doge_dist.cli._target import ModelBuildError, TargetError, build_model, load_target

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples" / "jobs").glob("*.yaml"))


def parse(text: str, **env: str):
    return parse_spec_text(textwrap.dedent(text), source="job.yaml", environ=env)


# -- fields --------------------------------------------------------------------------------------


def test_full_spec_is_parsed_and_typed():
    spec = parse("""
        description: all fields
        model: pkg.mod:build
        params: {sink: jsonl, path: out/x.jsonl, retries: 3}
        subjects: 100
        ticks: 50
        tick_ms: 1000
        timestamp_start: 2024-01-01T00:00:00Z
        seed: 7
        workers: 2
        ray_address: auto
        window: 10
        realtime: true
        speed: 2.5
    """)
    assert spec.model == "pkg.mod:build"
    assert spec.params == {"sink": "jsonl", "path": "out/x.jsonl", "retries": 3}
    assert spec.settings == {"subjects": 100, "ticks": 50, "tick_ms": 1000, "timestamp_start": 1704067200000,
                             "seed": 7, "workers": 2, "ray_address": "auto", "window": 10, "realtime": True,
                             "speed": 2.5}
    assert spec.description == "all fields"


@pytest.mark.parametrize("value", ["null", "unbounded", "~", "Unbounded"])
def test_ticks_unbounded(value):
    assert parse(f"model: m:f\nticks: {value}\n").settings == {"ticks": None}


def test_absent_fields_are_not_set():
    spec = parse("model: m:f\n")
    assert spec.settings == {} and spec.params == {}


@pytest.mark.parametrize("text, expected", [
    ("0", 0), ("1700000000000", 1700000000000), ("'2024-01-01T00:00:00+01:00'", 1704063600000),
    ("2024-01-01", 1704067200000), ("'2024-01-01 00:00:01'", 1704067201000), ("now", "now"),
])
def test_timestamp_start_forms(text, expected):
    assert parse(f"model: m:f\ntimestamp_start: {text}\n").settings["timestamp_start"] == expected


def test_now_resolves_to_the_current_time():
    before = int(time.time() * 1000)
    assert before <= resolve_timestamp("now") <= int(time.time() * 1000)
    assert resolve_timestamp(5) == 5


@pytest.mark.parametrize("field, value, words", [
    ("subjects", "0", "positive integer"),
    ("subjects", "abc", "positive integer"),
    ("subjects", "true", "positive integer"),
    ("ticks", "-1", "positive integer"),
    ("ticks", "1.5", "positive integer"),
    ("tick_ms", "0", "milliseconds"),
    ("timestamp_start", "yesterday", "ISO-8601"),
    ("seed", "-3", "non-negative"),
    ("seed", "[1]", "non-negative"),
    ("workers", "0", "positive integer"),
    ("ray_address", "3", "Ray address"),
    ("window", "0", "positive integer"),
    ("realtime", "maybe", "true or false"),
    ("speed", "0", "positive number"),
    ("speed", "fast", "positive number"),
    ("params", "[a, b]", "mapping"),
    ("params", "{1: x}", "identifiers"),
    ("model", "no_colon_here", ":function"),
    ("model", "42", "target"),
    ("description", "[1]", "text"),
])
def test_bad_field_names_field_and_line(field, value, words):
    text = f"model: m:f\n{field}: {value}\n" if field != "model" else f"seed: 1\nmodel: {value}\n"
    with pytest.raises(SpecError) as info:
        parse(text)
    message = str(info.value)
    assert f"field '{field}'" in message and "(line 2)" in message and words in message
    assert message.startswith("job.yaml: ")


def test_unknown_key_suggests_the_closest_field():
    with pytest.raises(SpecError, match=r"unknown key 'subjcts' \(line 3\); did you mean 'subjects'\?"):
        parse("model: m:f\nseed: 1\nsubjcts: 5\n")
    with pytest.raises(SpecError, match="unknown key 'zzz' .*known: model"):
        parse("model: m:f\nzzz: 5\n")


def test_structure_errors():
    with pytest.raises(SpecError, match="empty"):
        parse("")
    with pytest.raises(SpecError, match="must be a mapping"):
        parse("- a\n- b\n")
    with pytest.raises(SpecError, match=r"field 'model'.*required"):
        parse("seed: 1\n")
    with pytest.raises(SpecError, match=r"field 'seed' \(line 3\): duplicate key \(lines 2 and 3\)"):
        parse("model: m:f\nseed: 1\nseed: 2\n")
    with pytest.raises(SpecError, match=r"invalid YAML.*\(line 2\)|\(line 2\).*invalid YAML"):
        parse("model: m:f\nparams: {a: [1, 2}\n")


# -- interpolation -------------------------------------------------------------------------------


def test_environment_interpolation_and_defaults():
    spec = parse("""
        model: m:f
        params:
          url: kafka://${HOST}:${PORT:-9092}
          literal: cost $${NOT_A_VAR}
          empty_default: "${EMPTY:-fallback}"
        subjects: ${N}
        realtime: ${RT:-false}
    """, HOST="broker", N="25", EMPTY="")
    assert spec.params == {"url": "kafka://broker:9092", "literal": "cost ${NOT_A_VAR}",
                           "empty_default": "fallback"}
    assert spec.settings == {"subjects": 25, "realtime": False}
    assert spec.env_vars == ["HOST", "PORT", "EMPTY", "N", "RT"]


def test_missing_variable_names_variable_and_field():
    with pytest.raises(SpecError) as info:
        parse("model: m:f\nparams:\n  sink: kafka\n  bootstrap: ${KAFKA_HOST}\n")
    message = str(info.value)
    assert "KAFKA_HOST is not set" in message and "field 'params.bootstrap' (line 4)" in message
    with pytest.raises(SpecError, match=r"field 'subjects' \(line 2\).*SUBJECTS is not set"):
        parse("model: m:f\nsubjects: ${SUBJECTS}\n")


def test_malformed_reference():
    with pytest.raises(SpecError, match=r"field 'params.a'.*malformed"):
        parse("model: m:f\nparams: {a: '${1X}'}\n")
    with pytest.raises(SpecError, match="malformed"):
        parse("model: m:f\nparams: {a: 'x ${OPEN'}\n")


def test_secrets_from_interpolation_and_urls_are_masked():
    spec = parse("""
        model: m:f
        params:
          db_url: postgresql://app:${DB_PASSWORD}@db:5432/x
          api: ${API_TOKEN}
          plain: ${REGION}
          password: literal-in-yaml
          broker: https://user:urlpass@host/path
    """, DB_PASSWORD="hunter2", API_TOKEN="tok-123", REGION="eu-1")
    resolved = spec.resolved()
    assert resolved["params"] == {"db_url": "postgresql://app:***@db:5432/x", "api": "***", "plain": "***",
                                  "password": "***", "broker": "https://user:***@host/path"}
    assert spec.masked_fields() == ["params.db_url", "params.api", "params.plain", "params.password",
                                    "params.broker"]
    assert spec.params["api"] == "tok-123"  # the model still gets the real value
    text = spec.masker.mask("failed to connect with tok-123 to postgresql://app:hunter2@db in eu-1")
    assert text == "failed to connect with *** to postgresql://app:***@db in ***"


def test_every_interpolated_value_is_masked_whatever_its_name():
    spec = parse("""
        model: m:f
        params:
          db_pass: ${DB_PASS}
          mysql_pwd: ${MYSQL_PWD}
          auth: ${REGISTRY_AUTH}
          conn: ${DB_CONN}
          broker: ${BROKER:-localhost:9092}
          dsn: postgresql+psycopg://${PGUSER:-postgres}:${PGPASSWORD:-}@${PGHOST:-127.0.0.1}/db
          glued: prefix${DB_CONN}
          subjects: ${N:-50}
          ratio: ${RATIO:-0.25}
          nested: {hosts: ["${HOST_A}", b]}
          literal: kept
        subjects: ${SUBJECTS:-40}
        ticks: ${TICKS:-unbounded}
        seed: ${SEED}
        timestamp_start: ${START:-2024-01-01T00:00:00Z}
    """, DB_PASS="Zebra-pw-1", MYSQL_PWD="Quokka-pw-2", REGISTRY_AUTH="Basic dXNlcjpwYXNz",
                 DB_CONN="s3cr3t-Opaque", HOST_A="alpha.internal", SEED="9")
    assert spec.params["conn"] == "s3cr3t-Opaque" and spec.params["ratio"] == 0.25
    resolved = spec.resolved()
    assert resolved["params"] == {
        "db_pass": "***", "mysql_pwd": "***", "auth": "***", "conn": "***", "broker": "***",
        "dsn": "postgresql+psycopg://***:@***/db", "glued": "prefix***", "subjects": 50, "ratio": "***",
        "nested": {"hosts": ["***", "b"]}, "literal": "kept"}
    # numeric run settings stay readable
    assert (resolved["subjects"], resolved["ticks"], resolved["seed"], resolved["timestamp_start"]) == \
        (40, None, 9, 1704067200000)
    assert spec.masked_fields() == ["params.db_pass", "params.mysql_pwd", "params.auth", "params.conn",
                                    "params.broker", "params.dsn", "params.glued", "params.ratio",
                                    "params.nested.hosts[0]"]
    mask = spec.masker.mask
    # in free text: the values of secret-looking variables everywhere, the others as whole tokens
    assert mask("xZebra-pw-1y, s3cr3t-Opaque, prefixs3cr3t-Opaque") == "x***y, ***, ***"
    assert mask("postgresql://postgres@127.0.0.1 via localhost:9092 on alpha.internal") == \
        "postgresql://***@*** via *** on ***"
    assert mask("50 subjects, 40 ticks, seed 9, ratio 0.25") == "50 subjects, 40 ticks, seed 9, ratio ***"
    assert spec.secret_vars == ["DB_PASS", "MYSQL_PWD", "REGISTRY_AUTH", "PGPASSWORD"]
    # a command-line value replaces the masked one in the report
    spec.set_param("conn", "plain-text")
    spec.override("model", "pkg:build", "TARGET")
    assert spec.resolved()["params"]["conn"] == "plain-text"
    assert "params.conn" not in spec.masked_fields()


def test_a_bad_interpolated_value_is_masked_in_the_error():
    with pytest.raises(SpecError) as info:
        parse("model: m:f\nsubjects: ${DB_CONN}\n", DB_CONN="s3cr3t-Opaque")
    assert "s3cr3t-Opaque" not in str(info.value)
    assert "field 'subjects' (line 2)" in str(info.value) and "***" in str(info.value)
    masker = Masker()
    with pytest.raises(SpecError):
        parse_spec_text("model: m:f\nseed: ${DB_CONN}\n", environ={"DB_CONN": "s3cr3t-Opaque"}, masker=masker)
    assert masker.mask("got s3cr3t-Opaque") == "got ***"


def test_a_lone_variable_is_typed_like_a_param():
    spec = parse("""
        model: m:f
        params:
          subjects: ${N:-50}
          rate: ${RATE}
          flag: ${FLAG}
          nothing: ${NOTHING}
          name: ${NAME}
          empty: ${EMPTY:-}
          quoted: '${ZIP}'
          leading_zero: ${ZIP}
          date: ${DAY}
          mixed: ${N:-50}x
          spaced: x ${N:-50}
          items:
            - ${N:-50}
    """, RATE="2.5", FLAG="true", NOTHING="null", NAME="alice", ZIP="01234", DAY="2024-01-01")
    assert spec.params == {"subjects": 50, "rate": 2.5, "flag": True, "nothing": None, "name": "alice",
                           "empty": "", "quoted": 1234, "leading_zero": 1234, "date": "2024-01-01",
                           "mixed": "50x", "spaced": "x 50", "items": [50]}
    assert all(parse_param(f"k={v}")[1] == spec.params[k] for k, v in
               [("rate", "2.5"), ("flag", "true"), ("nothing", "null"), ("name", "alice"), ("empty", "")])


def test_params_subjects_from_the_environment_reach_the_model(model_file):
    spec = parse(f"model: {model_file}:build\nparams:\n  subjects: ${{N:-50}}\n  ticks: ${{T}}\n", T="7")
    _, gen = prepare_model(spec)
    assert (gen.subjects_num, gen.ticks_num) == (50, 7)
    # in flow style the quotes are required: still typed
    flow = parse(f"model: {model_file}:build\nparams: {{subjects: '${{N:-50}}'}}\n")
    assert prepare_model(flow)[1].subjects_num == 50


@pytest.mark.parametrize("extra", ["", "realtime: false\n"])
def test_speed_needs_realtime_in_the_spec(extra):
    with pytest.raises(SpecError) as info:
        parse(f"model: m:f\nspeed: 2\n{extra}")
    assert "field 'speed' (line 2)" in str(info.value) and "realtime: true" in str(info.value)
    assert parse("model: m:f\nspeed: 2\nrealtime: true\n").settings == {"speed": 2.0, "realtime": True}


def test_masker_tokens_and_colliding_keys():
    masker = Masker(["pw"])
    masker.add_token("postgres")
    masker.add_token("doge")
    masker.add_token("eu")  # too short to look for in free text
    assert masker.mask("postgresql and postgres, doge_events, doge; eu; xpwx") == \
        "postgresql and ***, doge_events, ***; eu; x***x"
    topics = Masker()
    topics.add_token("topic-a")
    topics.add_token("topic-b")
    assert topics.mask_data({"kafka:topic-a": 1, "kafka:topic-b": 2, "kafka:***": 3}) == \
        {"kafka:***": 1, "kafka:***#2": 2, "kafka:***#3": 3}


def test_masker_helpers_and_log_formatter():
    assert mask_url_passwords("mysql+pymysql://root:s3cr3t@127.0.0.1/test and http://plain/x") == \
        "mysql+pymysql://root:***@127.0.0.1/test and http://plain/x"
    masker = Masker(["abc123"])
    data = {"token_events": 5, "list": ["x abc123"]}
    assert masker.mask_data(data) == {"token_events": 5, "list": ["x ***"]}
    assert masker.mask_data({"token": "v"}, mask_keys=True) == {"token": "***"}
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "using %s", ("abc123",), None)
    assert MaskingFormatter(masker, "%(message)s").format(record) == "using ***"


def test_override_validates_with_the_flag_name():
    spec = JobSpec()
    spec.override("ticks", "unbounded", "--ticks")
    spec.override("subjects", "12", "--subjects")
    assert spec.settings == {"ticks": None, "subjects": 12}
    with pytest.raises(SpecError, match=r"field 'workers \(--workers\)': must be a positive integer"):
        spec.override("workers", "-2", "--workers")


@pytest.mark.parametrize("text, expected", [
    ("n=5", ("n", 5)), ("x=-1.5", ("x", -1.5)), ("flag=true", ("flag", True)), ("v=null", ("v", None)),
    ("host=localhost:9092", ("host", "localhost:9092")), ("t=1:30", ("t", "1:30")), ("e=", ("e", "")),
    ("url=a=b", ("url", "a=b")),
])
def test_parse_param(text, expected):
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["novalue", "1x=2", "=3"])
def test_parse_param_rejects(text):
    with pytest.raises(SpecError, match="--param"):
        parse_param(text)


# -- targets -------------------------------------------------------------------------------------

MODEL = """
from doge_dist import CountingSink, DataOnlineGenerator, SubjectFactory


class Factory(SubjectFactory):
    def create(self):
        return object()


def build(subjects=5, ticks=10, extra=None):
    gen = DataOnlineGenerator(["a", "b"], "a", Factory(), subjects, 1000, ticks)
    gen.add_transition("go", "a", "b", 50, event_sinks=[CountingSink()])
    gen.add_transition("back", "b", "a", 50, event_sinks=[CountingSink()])
    return gen


def needs(required):
    return build()


def broken():
    raise ValueError("probability table is wrong")


def not_a_generator():
    return 42


GENERATOR = build()
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "models" / "my_model.py"
    path.parent.mkdir()
    path.write_text(MODEL)
    return path


def test_file_target_relative_to_base_dir(model_file):
    target = load_target("models/my_model.py:build", model_file.parent.parent)
    assert target.loaded_from_file and target.file == model_file
    gen = build_model(target, {"subjects": 3})
    assert isinstance(gen, DataOnlineGenerator) and gen.subjects_num == 3
    assert build_model(load_target(f"{model_file}:GENERATOR"), {}).subjects_num == 5


def test_module_target():
    target = load_target("examples.banking:build_generator")
    assert not target.loaded_from_file
    gen = build_model(target, {"sink": "count", "subjects": 4})
    assert gen.subjects_num == 4


@pytest.mark.parametrize("text, words", [
    ("nope.py:build", "file not found"),
    ("models/my_model.py:biuld", "has no attribute 'biuld'; did you mean 'build'?"),
    ("examples.banking:nothing_here", "has no attribute 'nothing_here'"),
    ("no_such_package_xyz.mod:f", "no module named 'no_such_package_xyz'"),
    ("justtext", "expected 'package.module:function'"),
])
def test_bad_targets(model_file, text, words):
    with pytest.raises(TargetError, match=words.replace("?", r"\?").replace("(", r"\(")):
        load_target(text, model_file.parent.parent)


def test_bad_params_and_models(model_file):
    base = model_file.parent.parent
    with pytest.raises(TargetError, match="has no parameter 'subjets'; did you mean 'subjects'"):
        build_model(load_target("models/my_model.py:build", base), {"subjets": 1})
    with pytest.raises(TargetError, match="needs parameter\\(s\\) 'required'"):
        build_model(load_target("models/my_model.py:needs", base), {})
    with pytest.raises(ModelBuildError, match="is invalid: probability table is wrong"):
        build_model(load_target("models/my_model.py:broken", base), {})
    with pytest.raises(ModelBuildError, match="returned int, expected a DataOnlineGenerator"):
        build_model(load_target("models/my_model.py:not_a_generator", base), {})
    with pytest.raises(TargetError, match="takes no params"):
        build_model(load_target("models/my_model.py:GENERATOR", base), {"x": 1})


def test_spec_settings_override_the_model(model_file):
    spec = parse(f"""
        model: {model_file}:build
        params: {{subjects: 3, ticks: 4}}
        subjects: 9
        ticks: unbounded
        tick_ms: 250
        timestamp_start: 2024-01-01T00:00:00Z
        seed: 11
    """)
    _, gen = prepare_model(spec)
    assert (gen.subjects_num, gen.ticks_num, gen.tick_ms, gen.timestamp_start, gen.seed) == \
        (9, None, 250, 1704067200000, 11)


def test_timestamp_now_is_resolved_when_the_model_is_prepared(model_file):
    spec = parse(f"model: {model_file}:build\ntimestamp_start: now\n")
    before = int(time.time() * 1000)
    _, gen = prepare_model(spec)
    assert before <= gen.timestamp_start <= int(time.time() * 1000)


# -- the shipped examples ------------------------------------------------------------------------


def test_example_specs_exist_and_validate():
    names = {p.name for p in EXAMPLES}
    assert {"banking-print.yaml", "banking-jsonl.yaml", "banking-kafka.yaml", "banking-kafka-avro.yaml",
            "banking-postgres.yaml"} <= names
    for path in EXAMPLES:
        spec = load_spec(path, environ={})
        assert spec.model == "../banking.py:build_generator"
        target = load_target(spec.model, spec.base_dir)
        assert target.file == REPO / "examples" / "banking.py"
    kafka = load_spec(REPO / "examples/jobs/banking-kafka.yaml", environ={"KAFKA_BOOTSTRAP": "k:1"})
    assert kafka.params["bootstrap_servers"] == "k:1"
    assert kafka.settings["ticks"] is None and kafka.settings["realtime"] is True
    assert kafka.settings["timestamp_start"] == "now"
    pg = load_spec(REPO / "examples/jobs/banking-postgres.yaml", environ={"PGPASSWORD": "pw-xyz"})
    assert "pw-xyz" in pg.params["db_url"] and "pw-xyz" not in str(pg.resolved())
    jsonl = load_spec(REPO / "examples/jobs/banking-jsonl.yaml", environ={})
    new_year = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert jsonl.settings["timestamp_start"] == int(new_year.timestamp() * 1000)
    for path in EXAMPLES:  # librdkafka reads a message timestamp of 0 as "now": start at a real date
        settings = load_spec(path, environ={}).settings
        expected = "now" if settings.get("realtime") else int(new_year.timestamp() * 1000)
        assert settings["timestamp_start"] == expected, path.name
