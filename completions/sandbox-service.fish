# fish completion for sandbox-service(1).
# Install as sandbox-service.fish in a directory of $fish_complete_path.

# Sandboxes: directories below /var/lib/sandbox-service that hold a spec file.
function __sandbox_service_names
    for f in /var/lib/sandbox-service/*/sandbox.yaml
        basename (dirname $f)
    end
end

# create NAME -- COMMAND [ARGUMENT...]: complete what follows "--" as a command line of its own.
function __sandbox_service_after_dashdash
    set -l tokens (commandline -opc) (commandline -ct)
    set -l i (contains -i -- -- $tokens)
    and __fish_complete_subcommand --commandline $tokens[(math $i + 1)..-1]
end

# Service units that can be wrapped (templates cannot).
function __sandbox_service_units
    systemctl list-unit-files --type=service --no-legend 2>/dev/null | string match -rv '^\S+@\.service' | string replace -r '\s.*' ''
end

# Security profiles: the shipped ones and the administrator's.
function __sandbox_service_profiles
    printf '%s\n' default strict trusted nonetwork dense
    for f in /usr/share/sandbox-service/profiles/*.conf /etc/sandbox-service/profiles/*.conf
        basename $f .conf
    end
end

# True while no argument follows the subcommand (one of $argv) yet: for the first argument only.
function __sandbox_service_first_arg
    set -l seen 0
    for t in (commandline -opc)[2..-1]
        if test $seen = 1
            string match -q -- '-*' $t; or return 1
        else if contains -- $t $argv
            set seen 1
        end
    end
    test $seen = 1
end

set -l commands create apply start stop restart reload status list limits logs delete upgrade profiles execute connect clone copy enable disable
set -l c sandbox-service

complete -c $c -f

# Global options, before the command.
complete -c $c -n "not __fish_seen_subcommand_from $commands" -l debug -d 'Show tracebacks for errors'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -l root -x -a '(__fish_complete_directories)' -d 'Work on the system image in DIR'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -l version -d 'Print the version and exit'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -l install-completion -d 'Install completion for the current shell'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -l show-completion -d 'Show completion for the current shell'
complete -c $c -s h -l help -d 'Show help and exit'

# Commands.
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a create -d 'Create a sandbox from a host unit or a command'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a apply -d 'Make the sandboxes what YAML documents list'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a start -d 'Start sandboxes and wait until they run'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a stop -d 'Stop sandboxes and wait until they stopped'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a restart -d 'Restart sandboxes'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a reload -d 'Reload the service inside a sandbox'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a status -d 'Show the state of a sandbox'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a list -d 'List all sandboxes with their state'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a limits -d 'Show how many more sandboxes this host can run'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a logs -d 'Show the journal of a sandbox'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a delete -d 'Stop, disable and remove sandboxes'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a upgrade -d 'Merge host updates into sandboxes, restart them'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a profiles -d 'List the security profiles, or show one'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a execute -d 'Run a command inside a running sandbox'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a connect -d 'Open a shell inside a running sandbox'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a clone -d 'Make a new sandbox from an existing one'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a copy -d 'Copy host paths into a sandbox'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a enable -d 'Start sandboxes at boot'
complete -c $c -n "not __fish_seen_subcommand_from $commands" -a disable -d 'Stop starting sandboxes at boot'

# Commands that take sandbox names.
complete -c $c -n "__fish_seen_subcommand_from start stop restart reload status logs delete upgrade" -a '(__sandbox_service_names)'

# create
set -l create "__fish_seen_subcommand_from create"
complete -c $c -n $create -s u -l unit -x -a '(__sandbox_service_units)' -d 'Host unit to wrap'
complete -c $c -n $create -s P -l package -x -d "Also copy this package's /etc and /var files"
complete -c $c -n $create -s C -l copy -r -F -d 'Also copy this host path'
complete -c $c -n $create -l user -x -a '(__fish_complete_users)' -d 'Run the service as this user'
complete -c $c -n $create -l group -x -a '(__fish_complete_groups)' -d 'Run the service with this group'
complete -c $c -n $create -l memory -x -d 'MemoryMax= of the slice (e.g. 512M)'
complete -c $c -n $create -l cpu-quota -x -d 'CPUQuota= of the slice (e.g. 50%)'
complete -c $c -n $create -l cpu-weight -x -d 'CPUWeight= of the slice (1-10000)'
complete -c $c -n $create -l io-weight -x -d 'IOWeight= of the slice (1-10000)'
complete -c $c -n $create -l tasks-max -x -d 'TasksMax= of the slice'
complete -c $c -n $create -l chroot -x -a '(__fish_complete_directories)' -d 'Run in this tree instead of a private root'
complete -c $c -n $create -l selinux -x -a 'auto enabled disabled' -d 'SELinux labelling mode'
complete -c $c -n $create -l description -x -d 'Text for Description='
complete -c $c -n $create -l enable -d 'Start the sandbox at boot'
complete -c $c -n $create -l now -d 'Start the sandbox and wait until it runs'
complete -c $c -n $create -l profile -x -a '(__sandbox_service_profiles)' -d 'Security profile'
complete -c $c -n $create -l memory-deny-write-execute -d 'Forbid writable and executable memory'
complete -c $c -n $create -l allow-write-execute -d 'Allow writable and executable memory'
complete -c $c -n $create -l private-users -d "systemd's PrivateUsers= (only without a user namespace)"
complete -c $c -n $create -l no-private-users -d 'No PrivateUsers='
complete -c $c -n $create -l user-namespace -d "The sandbox's root is a private range of host IDs (default)"
complete -c $c -n $create -l no-user-namespace -d "The sandbox's root is the host's root"
complete -c $c -n $create -l run-size -x -d "Size of the sandbox's /run"
complete -c $c -n $create -l max-exposure -x -d 'Fail if systemd-analyze security scores above N'
complete -c $c -n $create -l network -x -a 'none host bridge=' -d 'Network mode'
complete -c $c -n $create -s p -l publish -x -d 'Publish [ADDR:]HOSTPORT:PORT[/tcp|/udp]'
complete -c $c -n $create -l allow-ip -x -d 'IPAddressAllow= entry (address or prefix)'
complete -c $c -n $create -l deny-ip -x -d 'IPAddressDeny= entry (address or prefix)'
complete -c $c -n $create -l exist-ok -d 'Succeed if the sandbox exists with these settings'
complete -c $c -n $create -l dry-run -d 'Print every file create would write'
complete -c $c -n $create -l json -d 'Machine-readable result'
complete -c $c -n $create -l no-wait -d 'Fail at once if another run is changing the sandbox'
# The command after "--": a program, then files.
complete -c $c -n "$create; and contains -- -- (commandline -opc)" -a '(__sandbox_service_after_dashdash)'

# status, list, limits
complete -c $c -n "__fish_seen_subcommand_from status list limits" -l json -d 'Machine-readable output'
complete -c $c -n "__fish_seen_subcommand_from status" -l exposure -d 'Also score the unit with systemd-analyze security'

# apply FILE|DIR
set -l apply "__fish_seen_subcommand_from apply"
complete -c $c -n $apply -F
complete -c $c -n $apply -l prune -d "Delete the sandboxes of the documents' groups they no longer list"
complete -c $c -n $apply -l dry-run -d 'Print the plan; change nothing'
complete -c $c -n $apply -l no-wait -d 'Fail at once if another run is changing the sandbox'
complete -c $c -n $apply -l json -d 'Machine-readable summary'

# logs
complete -c $c -n "__fish_seen_subcommand_from logs" -s f -l follow -d 'Keep printing new entries'
complete -c $c -n "__fish_seen_subcommand_from logs" -s n -l lines -x -d 'Show only the last N entries'

# delete
complete -c $c -n "__fish_seen_subcommand_from delete" -l keep-data -d 'Keep /var/lib/sandbox-service/NAME'
complete -c $c -n "__fish_seen_subcommand_from delete clone copy enable disable" -l no-wait -d 'Fail at once if another run is changing the sandbox'

# profiles
complete -c $c -n "__fish_seen_subcommand_from profiles" -l json -d 'Machine-readable output'
complete -c $c -n "__sandbox_service_first_arg profiles" -a '(__sandbox_service_profiles)'

# execute NAME -- COMMAND [ARGUMENT...], connect, clone SOURCE NAME, enable, disable
complete -c $c -n "__sandbox_service_first_arg execute clone" -a '(__sandbox_service_names)'
complete -c $c -n "__fish_seen_subcommand_from execute; and contains -- -- (commandline -opc)" -a '(__sandbox_service_after_dashdash)'
complete -c $c -n "__fish_seen_subcommand_from connect" -l shell -r -F -d 'The shell to start inside'
complete -c $c -n "__fish_seen_subcommand_from connect enable disable" -a '(__sandbox_service_names)'

# copy NAME PATH...
complete -c $c -n "__sandbox_service_first_arg copy" -a '(__sandbox_service_names)'
complete -c $c -n "__fish_seen_subcommand_from copy" -l dry-run -d 'Check the paths, copy nothing'
complete -c $c -n "__fish_seen_subcommand_from copy" -l json -d 'Machine-readable output'

# upgrade
set -l upgrade "__fish_seen_subcommand_from upgrade"
complete -c $c -n $upgrade -l all -d 'Upgrade every sandbox'
complete -c $c -n $upgrade -l no-restart -d 'Leave running sandboxes running'
complete -c $c -n $upgrade -l dry-run -d 'List what would change; write nothing'
complete -c $c -n $upgrade -l json -d 'Machine-readable result'
complete -c $c -n $upgrade -l no-wait -d 'Fail at once if another run is changing the sandbox'
