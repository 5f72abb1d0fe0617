# From getindata/doge-datagen (https://github.com/getindata/doge-datagen), examples/doge_kafka_example.py at
# commit db5288a1dd914dd3e18bc2429a17609ec59ddb02; Apache License 2.0, see tests/upstream/LICENSE.
# Changed for doge-dist: the import line says doge_dist instead of doge_datagen;
# the broker address (KAFKA_BOOTSTRAP_SERVERS, default localhost:9092) and security.protocol
# (KAFKA_SECURITY_PROTOCOL, default SASL_SSL) are read from environment variables, so a test
# can run it against a local PLAINTEXT broker; `import os` added for that. Nothing else.

import json
import os

from doge_dist import Transition, KafkaSinkFactory
from examples.doge_example_common import create_example_data_online_generator, User


def key_function(subject: User, transition: Transition) -> str:
    return str(subject.user_id)


def value_function(timestamp: int, subject: User, transition: Transition) -> str:
    value = {
        'timestamp': timestamp,
        'user': {
            'user_id': subject.user_id,
            'balance': subject.balance,
            'loan_balance': subject.loan_balance
        },
        'event': transition.trigger
    }
    return json.dumps(value)


if __name__ == '__main__':

    bootstrap_servers = os.environ.get('KAFKA_BOOTSTRAP_SERVERS', 'localhost:9092').split(',')
    client_id = 'doge-kafka-example'

    # Kafka Additional Configuration - optional
    kafka_conf = {
        'bootstrap.servers': ','.join(bootstrap_servers),
        'client.id': client_id,
        'security.protocol': os.environ.get('KAFKA_SECURITY_PROTOCOL', 'SASL_SSL'),
        'sasl.mechanism': 'PLAIN',
        'sasl.username': 'username',
        'sasl.password': 'pswd'
    }

    topic_name = 'test_topic'
    
    factory = KafkaSinkFactory(conf=kafka_conf)
    sink = factory.create(topic_name, key_function, value_function)

    datagen = create_example_data_online_generator(sink)

    datagen.start()
