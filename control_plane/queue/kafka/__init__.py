"""The Kafka chunk queue (``MTB_QUEUE=kafka``), split by what each part does:

* ``topics``: topic layout, message schemas and (de)serialization, ``ensure_topics``;
* ``client``: what every aiokafka client shares (rate-limited aiokafka logs);
* ``offsets``: ``OffsetTracker``, which fetched offsets may be committed;
* ``consumer``: ``GroupConsumer``, the consumer-group base (subscribe, poll, commit,
  rebalance) of the chunk consumer and of the ingest consumer;
* ``publisher``: the producer: chunks, retries, dead letters, result events;
* ``lag``: consumer-group lag, the queue depth of a process that only publishes;
* ``chunk_queue``: ``KafkaChunkQueue``, the ``ChunkQueue`` made of the above.

No module imports aiokafka at import time: the in-process setup never needs it.
"""

from __future__ import annotations

from control_plane.queue.kafka.chunk_queue import KafkaChunkQueue

__all__ = ["KafkaChunkQueue"]
