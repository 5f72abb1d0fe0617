# From getindata/doge-datagen (https://github.com/getindata/doge-datagen), examples/__init__.py at
# commit db5288a1dd914dd3e18bc2429a17609ec59ddb02; Apache License 2.0, see tests/upstream/LICENSE.
# Changed for doge-dist: nothing (the file is unchanged).

import doge_example_common
import doge_kafka_example
