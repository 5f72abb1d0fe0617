# From getindata/doge-datagen (https://github.com/getindata/doge-datagen), examples/doge_kafka_avro_example.py
# at commit db5288a1dd914dd3e18bc2429a17609ec59ddb02; Apache License 2.0, see tests/upstream/LICENSE.
# Changed for doge-dist: the import line says doge_dist instead of doge_datagen; the broker address
# (KAFKA_BOOTSTRAP_SERVERS, default localhost:9092), security.protocol (KAFKA_SECURITY_PROTOCOL, default
# SASL_SSL) and the Schema Registry URL (SCHEMA_REGISTRY_URL, default http://localhost:8081) are read from
# environment variables, so a test can run it against a local PLAINTEXT broker and registry; `import os`
# added for that. Nothing else.

import os
from typing import Dict, Any

from doge_dist import Transition, KafkaAvroSinkFactory
from examples.doge_example_common import create_example_data_online_generator, User


def key_function(subject: User, transition: Transition) -> Dict[str, Any]:
    return {'key': str(subject.user_id)}


def value_function(timestamp: int, subject: User, transition: Transition) -> Dict[str, Any]:
    value = {
        'timestamp': timestamp,
        'user': {
            'userId': str(subject.user_id),
            'balance': str(subject.balance),
            'loanBalance': str(subject.loan_balance)
        },
        'event': transition.trigger
    }
    return value


def get_schema(schema_path):
    with open(schema_path) as f:
        return f.read()


if __name__ == '__main__':
    key_schema = get_schema('./avro/Key.avsc')
    event_schema = get_schema('./avro/Event.avsc')

    bootstrap_servers = os.environ.get('KAFKA_BOOTSTRAP_SERVERS', 'localhost:9092').split(',')
    client_id = 'doge-kafka-example'

    # Kafka Configuration - for OCI Streaming
    kafka_conf = {
        'bootstrap.servers': ','.join(bootstrap_servers),
        'client.id': client_id,
        'security.protocol': os.environ.get('KAFKA_SECURITY_PROTOCOL', 'SASL_SSL'),
        'sasl.mechanism': 'PLAIN',
        'sasl.username': 'username',
        'sasl.password': 'pswd'
    }

    schema_registry_url = os.environ.get('SCHEMA_REGISTRY_URL', 'http://localhost:8081')

    topic_name = 'test_avro_topic'

    factory = KafkaAvroSinkFactory(schema_registry_url=schema_registry_url, conf=kafka_conf)
    sink = factory.create(topic_name, key_function, key_schema, value_function, event_schema)

    datagen = create_example_data_online_generator(sink)

    datagen.start()
