"""Queues (app_queue): a queue extension works with two threads.

* *in*: ``dial-in`` (CallFlow=in) when the caller joins the queue, ``hangup`` with
  ``Bridged`` when the caller's call is released; no ``answer``. ANSWER when an agent
  answered (Duration and BridgedDuration: the talk time from that answer), CANCEL when
  the caller gave up, NOANSWER when the queue timed out.
* *out*: for each agent attempt the queue gets ``dial-in``, ``answer`` if that agent
  answered, ``hangup``, with CallFlow=out and a SubCallID of its own: the queue calls its
  agent (CallerIDNum the queue), on behalf of the caller (RemoteNumber).

Each agent's own phone also gets its normal dial-in/answer/hangup, with the queue as
its ``CallerExtension``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.translate.dial import DialRules
from bridge.translate.model import Emitted
from bridge.translate.parties import IN, OUT
from bridge.translate.wire import ext_fields

if TYPE_CHECKING:
    from bridge.ami.message import Message


class QueueRules(DialRules):
    """QueueCallerJoin, QueueCallerAbandon, AgentCalled, AgentConnect."""

    def _on_queuecallerjoin(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        queue = self._queues.get(msg.get("Queue", ""))
        if chan is None or queue is None:
            return
        self._start_caller(out, chan, ts, None, queue)
        self._start(out, chan, queue, IN, ts, self._reached_fields(chan, queue), kind="queue-in")

    def _on_queuecallerabandon(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is not None:
            chan.abandoned = True

    def _on_agentcalled(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        caller = self._chan(msg)
        agent = self._chan(msg, "Dest")
        queue = self._queues.get(msg.get("Queue", ""))
        if caller is None or agent is None or queue is None:
            return
        member = msg.get("Interface", "")
        number = member.split("/", 1)[-1].split("@", 1)[0]
        agent_ext = self._dir.member(member)
        # the out thread: the queue calls its agent, on behalf of the caller it connects to
        fields = {
            **self._dir.phone(queue).caller_fields(),
            "CalledNumber": agent_ext.extended if agent_ext is not None else number,
            **ext_fields("Called", agent_ext),
            "RemoteNumber": self._party(caller).num,
        }
        self._start(out, agent, queue, OUT, ts, fields, kind="queue-out", event="dial-in")

    def _on_agentconnect(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        caller = self._chan(msg)
        if caller is None:
            return
        self._person_answered(caller, ts, ("queue-in", "ivr"))
