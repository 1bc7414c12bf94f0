# -*- coding: utf-8 -*-
"""wstest's fuzzingclient, bounded in time (runs on Python 2.7 only).

usage: python fuzzingclient.py SPEC.json [--case-timeout S] [--deadline S]

autobahn/run.py runs this in the Python 2.7 virtualenv made by setup.sh.
It runs what `wstest -m fuzzingclient -s SPEC.json` runs, with the suite's
own case classes, verdicts and report writer, plus three things wstest
lacks, so that a run ends in bounded time and always leaves a report:

* a case whose TCP connection is still open after --case-timeout seconds
  has that connection aborted; the suite then judges the case as it judges
  any lost connection (normally FAILED) and goes on with the next case;
* after --deadline seconds, or on SIGTERM/SIGINT, the reports of the cases
  run so far are written and the run stops;
* a failed TCP connect skips that case only (wstest would skip all the
  remaining ones); a skipped case has no entry in index.json.

Before the first case, OUTDIR/selected_cases.json lists the selected case
ids, so that a reader can tell a case that did not run from one that passed.
"""
from __future__ import print_function

import json
import os
import signal
import sys
import time

# The same import order as autobahntestsuite.wstest: the reactor first.
from autobahntestsuite import choosereactor  # noqa: F401
from twisted.internet import reactor

from autobahntestsuite import fuzzing


def say(message):
    print("fuzzingclient: " + message)
    sys.stdout.flush()


def parse_args(argv):
    args = {"spec": None, "case_timeout": 15.0, "deadline": 900.0}
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg in ("--case-timeout", "--deadline") and rest:
            args[arg[2:].replace("-", "_")] = float(rest.pop(0))
        elif args["spec"] is None and not arg.startswith("-"):
            args["spec"] = arg
        else:
            raise SystemExit(__doc__)
    if args["spec"] is None:
        raise SystemExit(__doc__)
    return args


class Run(object):
    """Patches fuzzing.FuzzingClientFactory for one bounded run."""

    def __init__(self, outdir, case_timeout):
        self.outdir = outdir
        self.case_timeout = case_timeout
        self.factory = None
        self.finished = False
        self.timed_out = []
        self.connect_failed = []

    def install(self):
        factory_class = fuzzing.FuzzingClientFactory
        run = self
        original_init = factory_class.__init__
        original_build = factory_class.buildProtocol
        original_lost = factory_class.clientConnectionLost

        def init(factory, spec, debug=False):
            # The original expands the case selection, then starts the first
            # (asynchronous) connect.
            run.factory = factory
            original_init(factory, spec, debug)
            with open(os.path.join(run.outdir, "selected_cases.json"), "w") as f:
                json.dump(list(factory.specCases), f)

        def build_protocol(factory, addr):
            protocol = original_build(factory, addr)
            run.watch(protocol, factory.currentCaseId)
            return protocol

        def connection_lost(factory, connector, reason):
            # After the last case the original writes the reports and stops
            # the reactor: finish() must not do it a second time.
            if factory.currSpecCase + 1 >= len(factory.specCases):
                run.finished = True
            return original_lost(factory, connector, reason)

        def connection_failed(factory, connector, reason):
            case_id = getattr(factory, "currentCaseId", "?")
            run.connect_failed.append(case_id)
            say("connect for case %s failed (%s); skipping it"
                % (case_id, reason.getErrorMessage()))
            if factory.nextCase():
                connector.connect()
            else:
                run.finish("all cases attempted")

        factory_class.__init__ = init
        factory_class.buildProtocol = build_protocol
        factory_class.clientConnectionLost = connection_lost
        factory_class.clientConnectionFailed = connection_failed

    def watch(self, protocol, case_id):
        """Abort the case's connection if it is still open after case_timeout."""
        def abort():
            transport = getattr(protocol, "transport", None)
            if transport is not None and getattr(transport, "connected", False):
                self.timed_out.append(case_id)
                say("case %s still running after %.0fs: aborting its connection"
                    % (case_id, self.case_timeout))
                transport.abortConnection()

        call = reactor.callLater(self.case_timeout, abort)
        original = protocol.connectionLost

        def connection_lost(reason):
            if call.active():
                call.cancel()
            return original(reason)

        protocol.connectionLost = connection_lost

    def finish(self, why):
        """Write the reports of the cases run so far and stop the reactor."""
        if self.finished:
            return
        self.finished = True
        factory = self.factory
        done = sum(len(cases) for cases in factory.agents.values()) if factory else 0
        say("stopping (%s); writing reports for %d case(s)" % (why, done))
        if factory is not None:
            try:
                factory.createReports()
            except Exception as e:  # the stop must happen anyway
                say("writing reports failed: %r" % (e,))
        if reactor.running:
            reactor.stop()


def main():
    args = parse_args(sys.argv)
    with open(args["spec"]) as f:
        spec = json.load(f)
    if len(spec.get("servers", [])) != 1:
        raise SystemExit("fuzzingclient: the spec must name exactly one server")
    outdir = spec["outdir"]
    if not os.path.isdir(outdir):
        os.makedirs(outdir)

    run = Run(outdir, args["case_timeout"])
    run.install()

    def on_signal(signum, frame):
        reactor.callFromThread(run.finish, "signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reactor.callLater(args["deadline"], run.finish,
                      "overall deadline of %.0fs" % args["deadline"])

    started = time.time()
    fuzzing.startClient(spec)
    reactor.run(installSignalHandlers=False)
    say("finished in %.1fs; cases aborted after the case timeout: %s; "
        "cases whose connect failed: %s"
        % (time.time() - started, ",".join(run.timed_out) or "none",
           ",".join(run.connect_failed) or "none"))


if __name__ == "__main__":
    main()
