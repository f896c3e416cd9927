"""Contract tests: each component's broker cases, written once and run on every broker.

As eventsourcing's recorder test cases and FastStream's broker-agnostic test cases do, a module
here holds one base class of cases per component (``WorkflowManagerContract``, ``PlannerContract``
…), written against a ``settings`` fixture (the tier's broker under a fresh topic prefix) and the
capability flags of ``self.broker`` (``transactional``, ``time_lookup`` …) for what really differs
between brokers. A broker tier binds it in a few lines::

    class TestWorkflowsOnEmbedded(OnEmbedded, WorkflowManagerContract):
        pass

so a case added to the contract runs on both brokers. Cases that only make sense on one broker
(exactly-once across a kill -9, topic configs Tansu cannot alter, SASL) are methods of that tier's
subclass, as are the few that check the same on any broker but were kept to one tier to save
time (each tier module's docstring says which and why).

The base classes' names do not start with ``Test``: pytest collects them only through a tier.
"""
