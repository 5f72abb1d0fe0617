# ruff: noqa: E501 - the embedded doge-datagen sources are kept verbatim
"""doge-datagen 1.0.4 code runs on doge_dist with only its import lines changed.

The example and test sources below are copied verbatim from the doge-datagen 1.0.4 sdist
(examples/doge_example_common.py, examples/doge_example.py, tests/doge_datagen/test_doge.py;
Apache-2.0, trailing whitespace stripped); the only edit, made at run time by ``port()``, is
``doge_datagen`` -> ``doge_dist`` in their import lines.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import doge_dist

REPO_ROOT = Path(__file__).resolve().parent.parent

# fmt: off
DOGE_EXAMPLE_COMMON = r'''from dataclasses import dataclass
from random import randrange

from doge_datagen import Transition, SubjectFactory, DataOnlineGenerator


@dataclass
class User:
    user_id: int
    balance: int
    loan_balance: int
    last_payment: int

    def __hash__(self):
        return self.user_id


class UserFactory(SubjectFactory[User]):
    def __init__(self):
        super().__init__()
        self.current_id = 0

    def create(self) -> User:
        user = User(self.current_id, randrange(0, 1000), 0, 0)
        self.current_id += 1
        return user


def income_callback(subject: User, transition: Transition):
    subject.balance += randrange(500, 2000)
    return True


def spending_callback(subject: User, transition: Transition):
    payment = randrange(10, 100)
    if payment > subject.balance:
        return False
    subject.balance -= payment
    subject.last_payment = payment
    return True


def take_loan_callback(subject: User, transition: Transition):
    subject.loan_balance += 10000
    subject.balance += 10000
    return True


def create_example_data_online_generator(sink):
    datagen = DataOnlineGenerator(['offline', 'online', 'loan_screen'], 'offline', UserFactory(), 10, 60000, 1000)
    datagen.add_transition('income', 'offline', 'offline', 0.01, action_callback=income_callback, event_sinks=[sink])
    datagen.add_transition('spending', 'offline', 'offline', 0.1, action_callback=spending_callback, event_sinks=[sink])
    datagen.add_transition('login', 'offline', 'online', 0.1, event_sinks=[sink])
    datagen.add_transition('logout', 'online', 'offline', 70, event_sinks=[sink])
    datagen.add_transition('open_loan_screen', 'online', 'loan_screen', 30, event_sinks=[sink])
    datagen.add_transition('close_loan_screen', 'loan_screen', 'online', 40, event_sinks=[sink])
    datagen.add_transition('take_loan', 'loan_screen', 'online', 10,
                           action_callback=take_loan_callback, event_sinks=[sink])
    return datagen
'''

DOGE_EXAMPLE = r'''from doge_datagen import PrintingSink, Transition
from examples.doge_example_common import create_example_data_online_generator, User


def format_function(timestamp: int, user: User, transition: Transition) -> str:
    return '[{}] User id: {}, balance: {}, loan_balance: {} made a transition {} from {} to {}'\
        .format(timestamp,
                user.user_id,
                user.balance,
                user.loan_balance,
                transition.trigger,
                transition.from_state,
                transition.to_state)


if __name__ == '__main__':
    sink = PrintingSink(format_function)

    datagen = create_example_data_online_generator(sink)

    datagen.start()
'''

DOGE_TEST = r'''from dataclasses import dataclass
from typing import Tuple
from unittest.mock import Mock

import pytest

from doge_datagen import DataOnlineGenerator, SubjectFactory


@dataclass
class SomeSubject:
    subject_id: int

    def __hash__(self):
        return self.subject_id


STATE_1 = 'state1'
STATE_2 = 'state2'
STATE_3 = 'state3'
TRANSITION_1 = 'transition1'
TRANSITION_2 = 'transition2'
SOME_SUBJECT_1 = SomeSubject(1)
SOME_SUBJECT_2 = SomeSubject(2)


class TestDoge:

    def test_should_transition_subjects(self):
        factory = self.__create_factory_mock([SOME_SUBJECT_1, SOME_SUBJECT_2])
        action_callback = Mock(return_value=True)
        event_sink = Mock()
        doge = DataOnlineGenerator([STATE_1, STATE_2, STATE_3],
                                   STATE_1,
                                   factory,
                                   2, 1000, 2)
        doge.add_transition(TRANSITION_1, STATE_1, STATE_2, 100, action_callback, [event_sink])
        doge.add_transition(TRANSITION_2, STATE_2, STATE_3, 100, action_callback, [event_sink])

        doge.start()

        assert action_callback.call_count == 4
        self.__assert_action_called(action_callback.call_args_list[0].args,
                                    SOME_SUBJECT_1, TRANSITION_1, STATE_1, STATE_2)
        self.__assert_action_called(action_callback.call_args_list[1].args,
                                    SOME_SUBJECT_2, TRANSITION_1, STATE_1, STATE_2)
        self.__assert_action_called(action_callback.call_args_list[2].args,
                                    SOME_SUBJECT_1, TRANSITION_2, STATE_2, STATE_3)
        self.__assert_action_called(action_callback.call_args_list[3].args,
                                    SOME_SUBJECT_2, TRANSITION_2, STATE_2, STATE_3)
        assert event_sink.collect.call_count == 4
        self.__assert_event_sink_collect_called(event_sink.collect.call_args_list[0].args,
                                                0, SOME_SUBJECT_1, TRANSITION_1, STATE_1, STATE_2)
        self.__assert_event_sink_collect_called(event_sink.collect.call_args_list[1].args,
                                                0, SOME_SUBJECT_2, TRANSITION_1, STATE_1, STATE_2)
        self.__assert_event_sink_collect_called(event_sink.collect.call_args_list[2].args,
                                                1000, SOME_SUBJECT_1, TRANSITION_2, STATE_2, STATE_3)
        self.__assert_event_sink_collect_called(event_sink.collect.call_args_list[3].args,
                                                1000, SOME_SUBJECT_2, TRANSITION_2, STATE_2, STATE_3)
        event_sink.close.assert_called()

    def test_should_transition_to_final_state(self):
        factory = self.__create_factory_mock([SOME_SUBJECT_1])
        action_callback = Mock(return_value=True)
        event_sink = Mock()
        doge = DataOnlineGenerator([STATE_1, STATE_2],
                                   STATE_1,
                                   factory,
                                   1, 1000, 2)
        doge.add_transition(TRANSITION_1, STATE_1, STATE_2, 100, action_callback, [event_sink])

        doge.start()

        assert action_callback.call_count == 1
        self.__assert_action_called(action_callback.call_args_list[0].args,
                                    SOME_SUBJECT_1, TRANSITION_1, STATE_1, STATE_2)
        assert event_sink.collect.call_count == 1
        self.__assert_event_sink_collect_called(event_sink.collect.call_args_list[0].args,
                                                0, SOME_SUBJECT_1, TRANSITION_1, STATE_1, STATE_2)
        event_sink.close.assert_called()

    def test_should_fail_to_transition_once(self):
        factory = self.__create_factory_mock([SOME_SUBJECT_1])
        action_callback = Mock()
        action_callback.side_effect = [False, True]
        event_sink = Mock()
        doge = DataOnlineGenerator([STATE_1, STATE_2, STATE_3],
                                   STATE_1,
                                   factory,
                                   1, 1000, 2)
        doge.add_transition(TRANSITION_1, STATE_1, STATE_2, 100, action_callback, [event_sink])
        doge.add_transition(TRANSITION_2, STATE_2, STATE_3, 100, action_callback, [event_sink])

        doge.start()

        assert action_callback.call_count == 2
        self.__assert_action_called(action_callback.call_args_list[0].args,
                                    SOME_SUBJECT_1, TRANSITION_1, STATE_1, STATE_2)
        self.__assert_action_called(action_callback.call_args_list[1].args,
                                    SOME_SUBJECT_1, TRANSITION_1, STATE_1, STATE_2)
        assert event_sink.collect.call_count == 1
        self.__assert_event_sink_collect_called(event_sink.collect.call_args_list[0].args,
                                                1000, SOME_SUBJECT_1, TRANSITION_1, STATE_1, STATE_2)
        event_sink.close.assert_called()

    def test_should_raise_value_error_when_provided_incorrect_state_when_adding_transition(self):
        factory = self.__create_factory_mock([])
        doge = DataOnlineGenerator([STATE_1, STATE_2, STATE_3],
                                   STATE_1,
                                   factory,
                                   1, 1000, 2)

        with pytest.raises(ValueError):
            doge.add_transition(TRANSITION_1, 'unknown_state', STATE_2, 100)
        with pytest.raises(ValueError):
            doge.add_transition(TRANSITION_1, STATE_1, 'unknown_state', 100)

    def test_should_raise_value_error_when_provided_incorrect_initial_state(self):
        factory = self.__create_factory_mock([])
        with pytest.raises(ValueError):
            DataOnlineGenerator([STATE_1, STATE_2, STATE_3],
                                'unknown_state',
                                factory,
                                1, 1000, 2)

    @staticmethod
    def __create_factory_mock(subjects):
        factory = Mock(SubjectFactory)
        factory.create = Mock()
        factory.create.side_effect = subjects
        return factory

    @staticmethod
    def __assert_action_called(args: Tuple, subject: SomeSubject, trigger: str, from_state: str, to_state: str):
        assert args[0] == subject
        assert args[1].trigger == trigger
        assert args[1].from_state == from_state
        assert args[1].to_state == to_state

    @staticmethod
    def __assert_event_sink_collect_called(args: Tuple,
                                           timestamp: int,
                                           subject: SomeSubject,
                                           trigger: str,
                                           from_state: str,
                                           to_state: str):
        assert args[0] == timestamp
        assert args[1] == subject
        assert args[2].trigger == trigger
        assert args[2].from_state == from_state
        assert args[2].to_state == to_state
'''
# fmt: on


def port(source: str) -> str:
    """Change only the import lines: ``doge_datagen`` -> ``doge_dist``."""
    lines = []
    for line in source.splitlines(keepends=True):
        if re.match(r"\s*(from|import)\s+doge_datagen\b", line):
            line = line.replace("doge_datagen", "doge_dist")
        assert "doge_datagen" not in line, line
        lines.append(line)
    return "".join(lines)


EVENT_LINE = re.compile(r"^\[(\d+)\] User id: (\d+), balance: (-?\d+), loan_balance: (\d+) "
                        r"made a transition (\w+) from (\w+) to (\w+)$")
TRIGGERS = {"income": ("offline", "offline"), "spending": ("offline", "offline"),
            "login": ("offline", "online"), "logout": ("online", "offline"),
            "open_loan_screen": ("online", "loan_screen"), "close_loan_screen": ("loan_screen", "online"),
            "take_loan": ("loan_screen", "online")}


def test_doge_datagen_example_runs_unchanged(tmp_path):
    package = tmp_path / "examples"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "doge_example_common.py").write_text(port(DOGE_EXAMPLE_COMMON))
    (package / "doge_example.py").write_text(port(DOGE_EXAMPLE))
    env = dict(os.environ)
    # the working directory comes first on sys.path, so `examples` is the copy above, not ours
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.pop("LOGLEVEL", None)
    done = subprocess.run([sys.executable, "-m", "examples.doge_example"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no logging configured, no final-state warnings in this model
    lines = done.stdout.splitlines()
    assert len(lines) >= 10  # ~60 events expected for 10 users x 1000 ticks
    last_ts = -1
    state = {}
    loans = {}
    for line in lines:
        m = EVENT_LINE.match(line)
        assert m, f"not in doge-datagen's format: {line!r}"
        ts, user, _, loan, trigger, src, dst = m.groups()
        ts, user, loan = int(ts), int(user), int(loan)
        assert ts % 60000 == 0 and 0 <= ts < 1000 * 60000
        assert ts >= last_ts  # printed in tick order
        last_ts = ts
        assert 0 <= user < 10
        assert TRIGGERS[trigger] == (src, dst)
        assert state.get(user, "offline") == src  # each user's events chain from state to state
        state[user] = dst
        loans[user] = loans.get(user, 0) + (10000 if trigger == "take_loan" else 0)
        assert loan == loans[user]


def load_ported_test_class():
    """Execute the ported test module as a real module (its dataclass needs sys.modules)."""
    module = types.ModuleType("ported_doge_datagen_test_doge")
    sys.modules[module.__name__] = module
    exec(compile(port(DOGE_TEST), "doge_datagen/tests/test_doge.py (ported)", "exec"), module.__dict__)
    return module.TestDoge


PORTED_TESTS = [name for name in vars(load_ported_test_class()) if name.startswith("test_")]


def test_all_ported_tests_are_collected():
    assert PORTED_TESTS == [
        "test_should_transition_subjects",
        "test_should_transition_to_final_state",
        "test_should_fail_to_transition_once",
        "test_should_raise_value_error_when_provided_incorrect_state_when_adding_transition",
        "test_should_raise_value_error_when_provided_incorrect_initial_state",
    ]


@pytest.mark.parametrize("name", PORTED_TESTS)
def test_doge_datagen_unit_tests_pass(name):
    """doge-datagen's own unit tests (mock factory, mock callbacks, Mock() sinks), import changed only."""
    test_class = load_ported_test_class()
    getattr(test_class(), name)()


# -- doge-datagen's module paths ----------------------------------------------------------------

# The public names of each doge-datagen module: what it defines or imports from doge_datagen itself
# (users import e.g. ``from doge_datagen.printing_sink import PrintingSink, Transition``). Taken
# from the 1.0.4 sdist; ``graph`` exists only upstream (getindata/doge-datagen db5288a, graph.py).
DOGE_DATAGEN_NAMES = {
    "doge": {"Subject", "SubjectFactory", "EventSink", "Transition", "DataOnlineGenerator"},
    "printing_sink": {"Subject", "Transition", "EventSink", "PrintingSink"},
    "db_sink_factory": {"Subject", "Transition", "EventSink", "DbSink", "DbSinkFactory"},
    "kafka_sink_factory": {"Subject", "Transition", "EventSink", "KafkaSink", "KafkaSinkFactory"},
    "kafka_avro_sink_factory": {"Subject", "Transition", "KafkaSink", "KafkaSinkFactory",
                                "KafkaAvroSinkFactory"},
    "graph": {"DataOnlineGenerator", "DataOnlineGeneratorGrapher"},
}
# internals of doge-datagen's Kafka sink with no counterpart here: its flush-every-N message counter
# and the type variables of its annotations
NOT_PROVIDED = {"kafka_sink_factory": {"CounterHolder", "K", "V"}}


@pytest.mark.parametrize("module", sorted(DOGE_DATAGEN_NAMES))
def test_compat_module_exports_doge_datagens_names(module):
    compat = importlib.import_module(f"doge_dist.{module}")
    assert set(compat.__all__) == DOGE_DATAGEN_NAMES[module]
    assert len(compat.__all__) == len(set(compat.__all__))
    for name in compat.__all__:  # the very objects of the package's public API
        assert getattr(compat, name) is getattr(doge_dist, name), (module, name)
    star: dict = {}
    exec(f"from doge_dist.{module} import *", star)
    assert set(star) - {"__builtins__"} == DOGE_DATAGEN_NAMES[module]


def test_the_name_table_matches_the_installed_doge_datagen():
    """The table above, checked against doge-datagen 1.0.4 itself (in a subprocess: it configures
    logging at import)."""
    code = (
        "import importlib, json\n"
        "out = {}\n"
        f"for m in {sorted(set(DOGE_DATAGEN_NAMES) - {'graph'})!r}:\n"
        "    mod = importlib.import_module('doge_datagen.' + m)\n"
        "    out[m] = sorted(n for n, v in vars(mod).items() if not n.startswith('_')\n"
        "                    and (getattr(v, '__module__', None) or '').startswith('doge_datagen'))\n"
        "print(json.dumps(out))\n"
    )
    from benchmarks._peer import ensure_doge_datagen  # doge-datagen 1.0.4 itself, beside the environment

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ensure_doge_datagen()),
                                                         os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    installed = json.loads(done.stdout.strip().splitlines()[-1])
    for module, names in installed.items():
        assert set(names) == DOGE_DATAGEN_NAMES[module] | NOT_PROVIDED.get(module, set()), module


def test_compat_modules_keep_the_import_light():
    code = (
        "import json, sys\n"
        "import doge_dist\n"
        "light = [m for m in ('ray', 'confluent_kafka', 'sqlalchemy', 'fastavro') if m in sys.modules]\n"
        f"for m in {sorted(DOGE_DATAGEN_NAMES)!r}:\n"
        "    __import__('doge_dist.' + m)\n"
        "heavy = [m for m in ('ray', 'confluent_kafka', 'sqlalchemy', 'fastavro') if m in sys.modules]\n"
        "from doge_dist.kafka_avro_sink_factory import KafkaAvroSinkFactory\n"
        "from doge_dist.db_sink_factory import DbSinkFactory\n"
        "print(json.dumps([light, heavy, KafkaAvroSinkFactory.__name__, DbSinkFactory.__name__]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    light, heavy, avro, db = json.loads(done.stdout.strip().splitlines()[-1])
    assert light == [] and heavy == [], (light, heavy)
    assert (avro, db) == ("KafkaAvroSinkFactory", "DbSinkFactory")


def test_unknown_name_in_a_lazy_compat_module_is_an_attribute_error():
    from doge_dist import kafka_sink_factory

    with pytest.raises(AttributeError, match="has no attribute 'CounterHolder'"):
        kafka_sink_factory.CounterHolder  # noqa: B018
