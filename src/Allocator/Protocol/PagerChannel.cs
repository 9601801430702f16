using Paging.Interop;

namespace Paging.Protocol;

/// <summary>One end of the application–pager socket (SOCK_SEQPACKET): whole messages with optional fds.</summary>
internal sealed unsafe class PagerChannel : IDisposable
{
    public PagerChannel(FileDescriptor socket) => Socket = socket;

    public FileDescriptor Socket { get; }

    public void Dispose() => Socket.Dispose();

    /// <summary>Creates a connected pair; both ends close on exec (the child's end is duplicated for it).</summary>
    public static (FileDescriptor, FileDescriptor) CreatePair()
    {
        int* sv = stackalloc int[2];
        if (Libc.Socketpair(Libc.AF_UNIX, Libc.SOCK_SEQPACKET | Libc.SOCK_CLOEXEC, 0, sv) != 0)
        {
            throw Libc.Error("socketpair(AF_UNIX, SOCK_SEQPACKET)");
        }
        return (new FileDescriptor(sv[0]), new FileDescriptor(sv[1]));
    }

    public void Send(ReadOnlySpan<byte> message, ReadOnlySpan<int> fds)
    {
        if (fds.Length > PagerProtocol.MaxFds)
        {
            throw new ArgumentOutOfRangeException(nameof(fds));
        }
        byte* control = stackalloc byte[64];
        fixed (byte* data = message)
        {
            var iov = new Libc.IoVec { Base = data, Length = (nuint)message.Length };
            var hdr = new Libc.MsgHdr { Iov = &iov, IovLength = 1 };
            if (fds.Length > 0)
            {
                var cmsg = (Libc.CmsgHdr*)control;
                cmsg->Level = Libc.SOL_SOCKET;
                cmsg->Type = Libc.SCM_RIGHTS;
                cmsg->Length = (nuint)(sizeof(Libc.CmsgHdr) + 4 * fds.Length);
                fds.CopyTo(new Span<int>(control + sizeof(Libc.CmsgHdr), fds.Length));
                hdr.Control = control;
                hdr.ControlLength = (nuint)(sizeof(Libc.CmsgHdr) + ((4 * fds.Length + 7) & ~7));
            }
            while (true)
            {
                nint sent = Libc.Sendmsg(Socket, &hdr, Libc.MSG_NOSIGNAL);
                if (sent >= 0)
                {
                    return;
                }
                var errno = Libc.LastErrno;
                if (errno == Errno.EINTR)
                {
                    continue;
                }
                throw Libc.Error(errno, "sendmsg to the pager socket", errno == Errno.EPIPE ? "the other side has exited" : null);
            }
        }
    }

    /// <summary>
    /// Waits up to <paramref name="timeoutMs"/> (-1 = forever) for a message, also watching <paramref name="watchFd"/>
    /// (a pidfd: readable when that process exits). Returns the message length, 0 on orderly shutdown of the peer,
    /// -1 on timeout, -2 when the watched fd fired. Received fds are owned by the caller.
    /// </summary>
    public int Receive(Span<byte> buffer, Span<int> fds, out int fdCount, int timeoutMs, int watchFd = -1)
    {
        fdCount = 0;
        var pfd = stackalloc Libc.PollFd[2];
        pfd[0] = new Libc.PollFd { Fd = Socket.Fd, Events = Libc.POLLIN };
        pfd[1] = new Libc.PollFd { Fd = watchFd, Events = Libc.POLLIN };
        long deadline = timeoutMs < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        while (true)
        {
            int wait = timeoutMs < 0 ? -1 : (int)Math.Max(0, deadline - Environment.TickCount64);
            int n = Libc.Poll(pfd, watchFd >= 0 ? 2u : 1u, wait);
            if (n < 0)
            {
                var errno = Libc.LastErrno;
                if (errno == Errno.EINTR)
                {
                    continue;
                }
                throw Libc.Error(errno, "poll on the pager socket");
            }
            if (n == 0)
            {
                return -1;
            }
            if (pfd[0].Revents != 0)
            {
                break;
            }
            if (watchFd >= 0 && pfd[1].Revents != 0)
            {
                return -2;
            }
        }
        byte* control = stackalloc byte[64];
        fixed (byte* data = buffer)
        {
            var iov = new Libc.IoVec { Base = data, Length = (nuint)buffer.Length };
            var hdr = new Libc.MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = 64 };
            nint got;
            while ((got = Libc.Recvmsg(Socket, &hdr, Libc.MSG_CMSG_CLOEXEC)) < 0)
            {
                var errno = Libc.LastErrno;
                if (errno == Errno.ECONNRESET)
                {
                    return 0;
                }
                if (errno != Errno.EINTR)
                {
                    throw Libc.Error(errno, "recvmsg from the pager socket");
                }
            }
            if (hdr.ControlLength >= (nuint)sizeof(Libc.CmsgHdr))
            {
                var cmsg = (Libc.CmsgHdr*)control;
                if (cmsg->Level == Libc.SOL_SOCKET && cmsg->Type == Libc.SCM_RIGHTS)
                {
                    int count = (int)(((long)cmsg->Length - sizeof(Libc.CmsgHdr)) / 4);
                    var received = new ReadOnlySpan<int>(control + sizeof(Libc.CmsgHdr), count);
                    if (count > fds.Length)
                    {
                        foreach (int fd in received)
                        {
                            Libc.Close(fd);
                        }
                        throw new PagerException($"a pager message carried {count} file descriptors, more than {fds.Length}");
                    }
                    received.CopyTo(fds);
                    fdCount = count;
                }
            }
            if ((hdr.Flags & (Libc.MSG_TRUNC | Libc.MSG_CTRUNC)) != 0)
            {
                for (int i = 0; i < fdCount; i++)
                {
                    Libc.Close(fds[i]);
                }
                throw new PagerException("a pager message was truncated");
            }
            return (int)got;
        }
    }
}
