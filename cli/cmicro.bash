# bash completion for cmicro (installed in bash-completion's completions folder).
# Commands, their options, and service names from the registry (`cmicro services`, configured by
# the same MICRO_* environment as the tool).
_cmicro() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local cmds="services describe call health api new publish watch"
    if [ "$COMP_CWORD" -eq 1 ]; then
        mapfile -t COMPREPLY < <(compgen -W "$cmds --help" -- "$cur")
        return
    fi
    case "$prev" in
        -o) mapfile -t COMPREPLY < <(compgen -W "json" -- "$cur"); return ;;
        --address|--timeout|--count|--seconds|-m|new) return ;;
    esac
    local cmd=${COMP_WORDS[1]}
    if [ "$COMP_CWORD" -eq 2 ]; then
        case "$cmd" in
            describe|call|health|watch)
                mapfile -t COMPREPLY < <(compgen -W "$(cmicro services 2>/dev/null)" -- "$cur")
                return ;;
        esac
    fi
    case "$cmd" in
        services|health) mapfile -t COMPREPLY < <(compgen -W "-o --help" -- "$cur") ;;
        call) mapfile -t COMPREPLY < <(compgen -W "-m --timeout --address --help" -- "$cur") ;;
        publish) mapfile -t COMPREPLY < <(compgen -W "-m --help" -- "$cur") ;;
        api) mapfile -t COMPREPLY < <(compgen -W "--address --help" -- "$cur") ;;
        watch) mapfile -t COMPREPLY < <(compgen -W "--count --seconds --help" -- "$cur") ;;
        *) mapfile -t COMPREPLY < <(compgen -W "--help" -- "$cur") ;;
    esac
}
complete -F _cmicro cmicro
