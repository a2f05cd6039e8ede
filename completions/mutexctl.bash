
_mutexctl_completion() {
    local IFS=$'
'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \
                   COMP_CWORD=$COMP_CWORD \
                   _MUTEXCTL_COMPLETE=complete_bash $1 ) )
    return 0
}

complete -o default -F _mutexctl_completion mutexctl

