# What an installation of openMosixview holds, sourced by scripts/main.sh
# and scripts/build-deb.sh so that both install the same programs and links.

# Run as root, in an sbin directory: the agent, the helpers it looks for
# beside itself (CRIU restores a job's init from the same path on every node;
# the pull guard ends a post-copy copy whose agent died mid-pull), and the
# history collector.
SYSTEM_BINARIES=(openmosixd openmosix-jobinit openmosix-pullguard openmosixcollector)
# The command-line and terminal tools.
TOOL_BINARIES=(mosctl migrate mosrun mps mosmon mtop)
# openMosix's wrappers, links to mosrun.
MOSRUN_LINKS=(nomig runhome runon cpujob iojob nodecay slowdecay fastdecay)
# Links to mosctl.
MOSCTL_LINKS=(showmap setpe)
