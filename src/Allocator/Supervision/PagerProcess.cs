using System.Diagnostics;
using Paging.Interop;
using Paging.Kernel;
using Paging.Protocol;

namespace Paging.Supervision;

/// <summary>The application's handle on one pager child: the process, its pidfd and the socket to it.</summary>
internal sealed unsafe class PagerProcess : IDisposable
{
    private readonly byte[] _buffer = new byte[PagerProtocol.MaxMessage];
    private ulong _nextRequest;

    private PagerProcess(Process process, FileDescriptor pidfd, PagerChannel channel, PagerRole role)
    {
        Process = process;
        Pid = process.Id;
        Pidfd = pidfd;
        Channel = channel;
        Role = role;
    }

    public Process Process { get; }
    public int Pid { get; }
    public FileDescriptor Pidfd { get; }
    public PagerChannel Channel { get; }
    public PagerRole Role { get; set; }

    /// <summary>True once the standby was sent every region and the active pager's pidfd to watch.</summary>
    public bool Armed { get; set; }

    /// <summary>True when the process has exited (its pidfd is readable).</summary>
    public bool HasExited
    {
        get
        {
            var p = new Libc.PollFd { Fd = Pidfd.Fd, Events = Libc.POLLIN };
            return Libc.Poll(&p, 1, 0) != 0;
        }
    }

    /// <summary>Starts a pager, hands it the uffd and waits for its answer.</summary>
    public static PagerProcess Start(PagerLaunch launch, Userfaultfd uffd, PagerRole role, PagerTunables tunables, TimeSpan timeout)
    {
        var pager = Spawn(launch, role);
        try
        {
            pager.Introduce(uffd, tunables, timeout);
            return pager;
        }
        catch
        {
            pager.Kill();
            pager.Dispose();
            throw;
        }
    }

    /// <summary>Sends the pager its Hello with the uffd and waits for its answer (the second half of
    /// <see cref="Start"/>: a pager spawned earlier boots its runtime meanwhile).</summary>
    public void Introduce(Userfaultfd uffd, PagerTunables tunables, TimeSpan timeout)
    {
        Span<byte> hello = stackalloc byte[64];
        var message = new HelloMessage(Role, uffd.Features, tunables.SpinNanoseconds, tunables.LogLevel, tunables.FillThreads, tunables.MemoryBudget).Write(hello, 0);
        Request(message, [uffd.Handle.Fd], timeout, "start");
    }

    /// <summary>Starts a pager process with its end of a new channel, without waiting for it. Spawns run one at a
    /// time (the caller's lock): the child's end is inheritable only between its dup and the spawn, and a second spawn
    /// in that window would hand it to the wrong child.</summary>
    public static PagerProcess Spawn(PagerLaunch launch, PagerRole role)
    {
        var (mine, theirs) = PagerChannel.CreatePair();
        var channel = new PagerChannel(mine);
        Process? process = null;
        FileDescriptor? pidfd = null;
        try
        {
            // The child needs its end without CLOEXEC. Duplicate it just for the spawn and close the copy right after.
            int inheritable = Libc.Fcntl(theirs, Libc.F_DUPFD, 3);
            if (inheritable < 0)
            {
                throw Libc.Error("fcntl(F_DUPFD) of the pager socket");
            }
            try
            {
                var psi = new ProcessStartInfo(launch.FileName) { UseShellExecute = false };
                foreach (var a in launch.PrefixArguments)
                {
                    psi.ArgumentList.Add(a);
                }
                psi.ArgumentList.Add("--fd");
                psi.ArgumentList.Add(inheritable.ToString(System.Globalization.CultureInfo.InvariantCulture));
                psi.ArgumentList.Add("--app-pid");
                psi.ArgumentList.Add(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
                process = Process.Start(psi) ?? throw new PagerException($"could not start the pager '{launch}'");
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new PagerException($"could not start the pager '{launch}': {e.Message}", e);
            }
            finally
            {
                Libc.Close(inheritable);
                theirs.Dispose();
            }
            try
            {
                pidfd = Libc.PidfdOpen(process.Id);
            }
            catch (PagingSystemException e) when (e.Errno == Errno.ESRCH)
            {
                // It exited (and was reaped) before we could watch it: it could not start.
                string exit = process.WaitForExit(2000) ? $"exit code {process.ExitCode}" : "gone";
                throw new PagerException($"the pager '{launch}' exited at once ({exit}); its stderr says why", e);
            }
            return new PagerProcess(process, pidfd, channel, role);
        }
        catch
        {
            if (process is not null)
            {
                try { process.Kill(); } catch (InvalidOperationException) { }
                process.Dispose();
            }
            pidfd?.Dispose();
            channel.Dispose();
            throw;
        }
    }

    public ulong NextRequestId() => ++_nextRequest;

    /// <summary>Sends one request and waits for its reply; throws <see cref="PagerException"/> when the pager
    /// refuses it, exits, or does not answer within <paramref name="timeout"/>.</summary>
    public void Request(ReadOnlySpan<byte> message, ReadOnlySpan<int> fds, TimeSpan timeout, string what)
    {
        Send(message, fds, what);
        AwaitReply(timeout, what);
    }

    /// <summary>Sends a request without waiting (pair it with <see cref="AwaitReply"/>).</summary>
    public void Send(ReadOnlySpan<byte> message, ReadOnlySpan<int> fds, string what)
    {
        try
        {
            Channel.Send(message, fds);
        }
        catch (PagingSystemException e) when (e.Errno is Errno.EPIPE or Errno.ECONNRESET)
        {
            throw WentAway(what, e);
        }
    }

    /// <summary>Waits for the reply to the request sent last.</summary>
    public void AwaitReply(TimeSpan timeout, string what)
    {
        Span<int> received = stackalloc int[PagerProtocol.MaxFds];
        int n = Channel.Receive(_buffer, received, out int count, (int)timeout.TotalMilliseconds, Pidfd.Fd);
        for (int i = 0; i < count; i++)
        {
            Libc.Close(received[i]);
        }
        if (n == -1)
        {
            throw new PagerException($"the pager (pid {Pid}) did not answer '{what}' within {timeout.TotalSeconds:0.#} s");
        }
        if (n == 0 || n == -2)
        {
            throw WentAway(what, null);
        }
        var reader = new ProtocolReader(_buffer.AsSpan(0, n));
        if (reader.Type != MessageType.Reply)
        {
            throw new PagerException($"the pager (pid {Pid}) answered '{what}' with a {reader.Type} message, not a Reply");
        }
        var reply = ReplyMessage.Read(ref reader);
        if (reply.Status != 0)
        {
            throw new PagerException($"the pager refused '{what}': {reply.Message}");
        }
    }

    private PagerException WentAway(string what, Exception? inner)
    {
        string exit = Process.WaitForExit(2000) ? $"exit code {Process.ExitCode}" : "still running";
        return new PagerException($"the pager (pid {Pid}) went away during '{what}' ({exit}); its stderr says why", inner);
    }

    /// <summary>SIGKILL through the pidfd (no pid-reuse race).</summary>
    public void Kill() => _ = Libc.PidfdSendSignal(Pidfd, Libc.SIGKILL);

    public void Dispose()
    {
        Channel.Dispose();
        if (!Process.WaitForExit(2000))
        {
            Kill();
            Process.WaitForExit(2000);
        }
        Pidfd.Dispose();
        Process.Dispose();
    }
}


/// <summary>What the pager is told in Hello besides its role (PagingRuntimeOptions carries them).</summary>
/// <param name="SpinNanoseconds">How long the fault thread polls after a batch before sleeping.</param>
/// <param name="LogLevel">The pager's minimum log level (Microsoft.Extensions.Logging.LogLevel as an int).</param>
/// <param name="FillThreads">Fill threads per pager.</param>
/// <param name="MemoryBudget">The runtime's shared memory budget in bytes (0: none).</param>
internal readonly record struct PagerTunables(long SpinNanoseconds, int LogLevel, int FillThreads = 32, long MemoryBudget = 0);
