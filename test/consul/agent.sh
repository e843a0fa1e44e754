# Sourced by the shell tests that need Consul: with CONSUL_HTTP_ADDR set (a real agent), nothing
# to do; otherwise starts the project's test agent (consul_agent.py) on a free port, waits for it,
# and exports CONSUL_HTTP_ADDR. Sets $agent to its pid (empty for a real agent) for the caller's
# cleanup; returns non-zero when it did not start within 10 s.
#   . "$(dirname "$agent_py")/agent.sh"; consul_agent_start PYTHON AGENT_PY DIR || fail ...
consul_agent_start() {
    agent=
    [ -n "${CONSUL_HTTP_ADDR:-}" ] && return 0
    "$1" "$2" --port 0 >"$3/agent.out" 2>"$3/agent.err" &
    agent=$!
    _i=0
    until [ -s "$3/agent.out" ]; do
        _i=$((_i + 1))
        [ "$_i" -le 100 ] || return 1
        sleep 0.1
    done
    CONSUL_HTTP_ADDR=127.0.0.1:$(head -n 1 "$3/agent.out")
    export CONSUL_HTTP_ADDR
}
