namespace Paging.Interop;

/// <summary>Process file descriptors: pidfd_open and pidfd_send_signal (no pid-reuse races).</summary>
internal static partial class Libc
{
    internal const int SIGKILL = 9;

    internal static FileDescriptor PidfdOpen(int pid)
    {
        long fd = Syscall(SyscallNumbers.PidfdOpen, pid, 0);
        if (fd < 0)
        {
            throw Error($"pidfd_open({pid})");
        }
        return new FileDescriptor((int)fd);
    }

    internal static int PidfdSendSignal(FileDescriptor pidfd, int signal) => (int)Syscall(SyscallNumbers.PidfdSendSignal, pidfd, signal, 0, 0);
}
