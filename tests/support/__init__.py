"""Helpers shared by the tests and the benchmarks (``tests.support``), imported with the
repository root on ``sys.path``:

* ``servers``: real servers on loopback (kinesalite, moto's S3 server, PostgreSQL), free
  ports, stopping processes;
* ``stream_helpers``: consumers in a thread or a subprocess, waiting for final jobs, private
  lakes and streams;
* ``kinesis_fault_proxy``: a program (run by path, in a subprocess) that throttles chosen
  PutRecords entries on the way to a Kinesis-API server;
* ``lake_writer``: a program (run by path, in a subprocess) that appends small commits to
  ``raw.shop_events``; its ``shop_events`` generator is imported by the lake tests.
"""
