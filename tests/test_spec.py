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
from doge_dist.cli._mask import InstallLogMasking, Masker, MaskingFilter, MaskingFormatter, mask_url_passwords
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


def test_counts_and_seeds_follow_the_model_rules():
    """One rule for spec, flags and API (model/_validate.py): counts >= 0, seed in 0..2**64-1."""
    spec = parse("model: m:f\nsubjects: 0\nticks: 0\nseed: 18446744073709551615\nworkers: auto\n")
    assert spec.settings == {"subjects": 0, "ticks": 0, "seed": 2**64 - 1, "workers": "auto"}
    assert parse("model: m:f\nseed: 0\ntick_ms: 9223372036854775807\n").settings["seed"] == 0
    spec = JobSpec()
    spec.override("workers", "AUTO", "--workers")
    spec.override("seed", "18446744073709551615", "--seed")
    assert spec.settings == {"workers": "auto", "seed": 2**64 - 1}
    with pytest.raises(SpecError, match=r"field 'seed \(--seed\)': seed must be between 0 and 2\*\*64-1"):
        spec.override("seed", str(2**64), "--seed")


def test_a_run_whose_timestamps_overflow_int64_is_refused_with_the_line(model_file):
    spec = parse(f"model: {model_file}:build\nticks: 2000\ntick_ms: 9223372036854775\n")
    with pytest.raises(SpecError) as info:
        prepare_model(spec)
    assert "overflows 64-bit epoch milliseconds" in str(info.value) and "(line 2)" in str(info.value)


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
    ("subjects", "-1", "subjects must be >= 0"),
    ("subjects", "abc", "must be an integer"),
    ("subjects", "true", "must be an integer"),
    ("ticks", "-1", "ticks must be >= 0"),
    ("ticks", "1.5", "must be an integer"),
    ("tick_ms", "0", "tick_ms must be > 0"),
    ("tick_ms", "9223372036854775808", "does not fit in 64-bit epoch milliseconds"),
    ("timestamp_start", "yesterday", "ISO-8601"),
    ("timestamp_start", "-9223372036854775809", "does not fit in 64-bit epoch milliseconds"),
    ("seed", "-3", "between 0 and 2**64-1"),
    ("seed", "18446744073709551616", "between 0 and 2**64-1"),
    ("seed", "[1]", "must be an integer or None"),
    ("workers", "0", "positive integer or 'auto'"),
    ("ray_address", "3", "Ray address"),
    ("window", "0", "positive integer"),
    ("realtime", "maybe", "true or false"),
    ("speed", "0", "positive number"),
    ("speed", "fast", "positive number"),
    ("params", "[a, b]", "mapping"),
    ("params", "{1: x}", "identifiers"),
    ("secrets", "DB_URL", "list of environment variable names"),
    ("secrets", "[1x]", "environment variable names"),
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
    assert resolved["params"] == {"db_url": "postgresql://app:***@db:5432/x", "api": "***", "plain": "eu-1",
                                  "password": "***", "broker": "https://user:***@host/path"}
    assert spec.masked_fields() == ["params.db_url", "params.api", "params.password", "params.broker"]
    assert spec.masked_variables() == ["API_TOKEN", "DB_PASSWORD"]
    assert spec.params["api"] == "tok-123"  # the model still gets the real value
    text = spec.masker.mask("failed to connect with tok-123 to postgresql://app:hunter2@db in eu-1, "
                            "literal-in-yaml, urlpass")
    assert text == "failed to connect with *** to postgresql://app:***@db in eu-1, ***, ***"


SECRET_ENV = {"DB_PASS": "Zebra-pw-1", "MYSQL_PWD": "Quokka-pw-2", "REGISTRY_AUTH": "Basic dXNlcjpwYXNz",
              "KAFKA_API_KEY": "Koala-key-4", "MY_CREDENTIALS": "Cred-5", "CLIENT_SECRET": "Sec-6",
              "DB_CONN": "postgresql://db.internal:5432/x", "KAFKA_TOPIC": "orders",
              "HOST_A": "alpha.internal", "SEED": "9", "SASL_PW_VALUE": "Sasl-7", "OPAQUE": "Opaque-8"}


def test_only_secrets_are_masked_and_the_rest_is_shown():
    spec = parse("""
        model: m:f
        secrets: [OPAQUE]
        params:
          db_pass: ${DB_PASS}
          mysql_pwd: ${MYSQL_PWD}
          auth_header: ${REGISTRY_AUTH}
          key: ${KAFKA_API_KEY}
          creds: ${MY_CREDENTIALS}
          secret: ${CLIENT_SECRET}
          conn: ${DB_CONN}
          topic: ${KAFKA_TOPIC}
          out: ${DOGE_OUT:-out}/banking-{shard}.jsonl
          dsn: postgresql+psycopg://${PGUSER:-postgres}:${PGPASSWORD:-pgpw}@${PGHOST:-127.0.0.1}/db
          label: x-${OPAQUE}
          conf:
            sasl.password: ${SASL_PW_VALUE}
            ssl.key.pem: literal-key-pem
            basic.auth.user.info: user:literal-info
            bootstrap.servers: ${HOST_A}:9092
          subjects: ${N:-50}
          ratio: ${RATIO:-0.25}
          nested: {hosts: ["${HOST_A}", b]}
        subjects: ${SUBJECTS:-40}
        seed: ${SEED}
    """, **SECRET_ENV)
    resolved = spec.resolved()
    assert resolved["params"] == {
        "db_pass": "***", "mysql_pwd": "***", "auth_header": "***", "key": "***", "creds": "***",
        "secret": "***", "conn": "postgresql://db.internal:5432/x", "topic": "orders",
        "out": "out/banking-{shard}.jsonl", "dsn": "postgresql+psycopg://postgres:***@127.0.0.1/db",
        "label": "x-***",
        "conf": {"sasl.password": "***", "ssl.key.pem": "***", "basic.auth.user.info": "***",
                 "bootstrap.servers": "alpha.internal:9092"},
        "subjects": 50, "ratio": 0.25, "nested": {"hosts": ["alpha.internal", "b"]}}
    assert (resolved["subjects"], resolved["seed"]) == (40, 9)
    assert spec.masked_fields() == ["params.db_pass", "params.mysql_pwd", "params.auth_header", "params.key",
                                    "params.creds", "params.secret", "params.dsn", "params.label",
                                    "params.conf.sasl.password", "params.conf.ssl.key.pem",
                                    "params.conf.basic.auth.user.info"]
    assert spec.masked_variables() == ["CLIENT_SECRET", "DB_PASS", "KAFKA_API_KEY", "MYSQL_PWD",
                                       "MY_CREDENTIALS", "OPAQUE", "PGPASSWORD", "REGISTRY_AUTH",
                                       "SASL_PW_VALUE"]
    mask = spec.masker.mask
    assert mask("xZebra-pw-1y, Opaque-8, Sasl-7, literal-key-pem, user:literal-info, pgpw") == \
        "x***y, ***, ***, ***, ***, ***"
    # hosts, ports, topics and paths stay readable in messages
    assert mask('connection to server at "db.internal", port 5432 failed; topic orders; out/x') == \
        'connection to server at "db.internal", port 5432 failed; topic orders; out/x'
    # a command-line value replaces the masked one in the report, unless its key names a secret
    spec.set_param("db_pass", "plain-text")
    assert spec.resolved()["params"]["db_pass"] == "***"
    spec.set_param("label", "label-text")
    assert spec.resolved()["params"]["label"] == "label-text" and "params.label" not in spec.masked_fields()


def test_declared_secrets_are_masked_even_when_unused():
    spec = parse("model: m:f\nsecrets: [UNUSED_VAR, NOT_SET]\nparams: {a: 1}\n", UNUSED_VAR="Walrus-9")
    assert spec.masker.mask("Walrus-9 here") == "*** here"
    assert spec.masked_variables() == ["UNUSED_VAR"]
    assert spec.resolved()["secrets"] == ["UNUSED_VAR", "NOT_SET"]


def test_a_bad_interpolated_secret_is_masked_in_the_error():
    with pytest.raises(SpecError) as info:
        parse("model: m:f\nsubjects: ${DB_TOKEN}\n", DB_TOKEN="s3cr3t-Opaque")
    assert "s3cr3t-Opaque" not in str(info.value)
    assert "field 'subjects' (line 2)" in str(info.value) and "***" in str(info.value)
    masker = Masker()
    with pytest.raises(SpecError):
        parse_spec_text("model: m:f\nseed: ${DB_TOKEN}\n", environ={"DB_TOKEN": "s3cr3t-Opaque"},
                        masker=masker)
    assert masker.mask("got s3cr3t-Opaque") == "got ***"
    with pytest.raises(SpecError) as shown:  # a value that is no secret is shown, so the error is readable
        parse("model: m:f\nsubjects: ${DOGE_N}\n", DOGE_N="many")
    assert "got 'many'" in str(shown.value)


def test_alias_bombs_and_recursive_aliases_are_refused():
    levels = ['  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcde", "bcdef"):
        levels.append(f"  {name}: &{name} [{', '.join(['*' + prev] * 9)}]")  # 9**6 = 531,441 strings
    text = "model: m:f\nparams:\n" + "\n".join(levels) + "\n"
    with pytest.raises(SpecError, match="YAML aliases expand the job spec to more than 10,000 values"):
        parse_spec_text(text, source="job.yaml", environ={})
    with pytest.raises(SpecError, match=r"recursive values are not allowed"):
        parse_spec_text("model: m:f\nparams:\n  a: &a [1, *a]\n", environ={})
    # a few aliases are fine
    spec = parse_spec_text("model: m:f\nparams:\n  a: &a {x: 1}\n  b: *a\n", environ={})
    assert spec.params == {"a": {"x": 1}, "b": {"x": 1}}


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


def test_masker_colliding_keys_pickling_and_log_filter():
    import pickle
    import sys

    masker = Masker(["topic-a", "topic-b"])
    assert masker.mask_data({"kafka:topic-a": 1, "kafka:topic-b": 2, "kafka:***": 3}) == \
        {"kafka:***": 1, "kafka:***#2": 2, "kafka:***#3": 3}
    masker.mask("compile the pattern")
    copy = pickle.loads(pickle.dumps(masker))
    assert copy.mask("topic-a, http://u:pw@h") == "***, http://u:***@h"
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "using %s", ("topic-b",), None)
    assert MaskingFilter(masker).filter(record) and record.getMessage() == "using ***"
    try:
        raise RuntimeError("no topic-a")
    except RuntimeError:
        failing = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    MaskingFilter(masker).filter(failing)
    assert "no ***" in failing.exc_text and "topic-a" not in logging.Formatter().format(failing)
    setup = InstallLogMasking(masker)
    assert pickle.loads(pickle.dumps(setup)).masker.secrets == masker.secrets


def test_masker_helpers_and_log_formatter():
    assert mask_url_passwords("mysql+pymysql://root:s3cr3t@127.0.0.1/test and http://plain/x") == \
        "mysql+pymysql://root:***@127.0.0.1/test and http://plain/x"
    masker = Masker(["abc123"])
    data = {"token_events": 5, "list": ["x abc123"]}
    assert masker.mask_data(data) == {"token_events": 5, "list": ["x ***"]}
    assert masker.mask_data({"token": "v", "sasl.password": "w", "ssl.keystore.password": "z", "host": "h"},
                            mask_keys=True) == {"token": "***", "sasl.password": "***",
                                                "ssl.keystore.password": "***", "host": "h"}
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "using %s", ("abc123",), None)
    assert MaskingFormatter(masker, "%(message)s").format(record) == "using ***"


def test_override_validates_with_the_flag_name():
    spec = JobSpec()
    spec.override("ticks", "unbounded", "--ticks")
    spec.override("subjects", "12", "--subjects")
    assert spec.settings == {"ticks": None, "subjects": 12}
    with pytest.raises(SpecError, match=r"field 'workers \(--workers\)': must be a positive integer or "
                       r"'auto'"):
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
        assert spec.model in ("../banking.py:build_generator", "../banking_dynamics.py:build_generator")
        target = load_target(spec.model, spec.base_dir)
        assert target.file == REPO / "examples" / spec.model.removeprefix("../").split(":")[0]
    kafka = load_spec(REPO / "examples/jobs/banking-kafka.yaml", environ={"KAFKA_BOOTSTRAP": "k:1"})
    assert kafka.params["bootstrap_servers"] == "k:1"
    assert kafka.settings["ticks"] is None and kafka.settings["realtime"] is True
    assert kafka.settings["timestamp_start"] == "now"
    pg = load_spec(REPO / "examples/jobs/banking-postgres.yaml", environ={"PGPASSWORD": "pw-xyz"})
    assert "pw-xyz" in pg.params["db_url"] and "pw-xyz" not in str(pg.resolved())
    jsonl = load_spec(REPO / "examples/jobs/banking-jsonl.yaml", environ={})
    new_year = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert jsonl.settings["timestamp_start"] == int(new_year.timestamp() * 1000)
    assert jsonl.settings["workers"] == "auto"
    for path in EXAMPLES:  # librdkafka reads a message timestamp of 0 as "now": start at a real date
        settings = load_spec(path, environ={}).settings
        expected = "now" if settings.get("realtime") else int(new_year.timestamp() * 1000)
        assert settings["timestamp_start"] == expected, path.name
