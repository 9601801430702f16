using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Paging.Interop;
using Paging.Pages;

namespace Paging.Faults;

/// <summary>
/// The pager process's main loop (src/Pager is a thin host over this). Receives the uffd and the regions from the
/// application, builds each region's store, and serves faults on <see cref="FaultService"/>'s thread. A standby
/// pager does the same but reads no faults until the active pager it watches (a pidfd) exits. It exits when the
/// application exits or closes the socket: a pager never outlives its application.
/// </summary>
public static class PagerHost
{
    /// <summary>Runs the pager: <c>--fd N</c> is the inherited socket, <c>--app-pid P</c> the application.
    /// Returns the process exit code.</summary>
    public static int Run(string[] args, PageStoreRegistry registry, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        var logger = loggerFactory.CreateLogger("Paging.Pager");
        int socketFd = -1, appPid = -1;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--fd": socketFd = int.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture); break;
                case "--app-pid": appPid = int.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture); break;
            }
        }
        if (socketFd < 0 || appPid <= 0)
        {
            logger.LogCritical("usage: Paging.Pager --fd <inherited socket fd> --app-pid <application pid>; the library starts the pager itself");
            return 2;
        }
        // The inherited fd was made without CLOEXEC for us; do not pass it on to anything this process starts.
        _ = Libc.Fcntl(socketFd, Libc.F_SETFD, 1);
        using var session = new Session(new PagerChannel(new FileDescriptor(socketFd)), appPid, registry, logger);
        return session.Run();
    }

    private sealed unsafe class Session(PagerChannel channel, int appPid, PageStoreRegistry registry, ILogger logger) : IDisposable
    {
        private readonly byte[] _buffer = new byte[PagerProtocol.MaxMessage];
        private readonly byte[] _reply = new byte[PagerProtocol.MaxMessage];
        private Userfaultfd? _uffd;
        private FaultService? _faults;
        private FileDescriptor? _appPidfd;
        private FileDescriptor? _activePidfd;

        public int Run()
        {
            try
            {
                _appPidfd = FileDescriptor.OpenPidfd(appPid);
            }
            catch (PagingSystemException e)
            {
                logger.LogCritical("the application (pid {Pid}) is gone: {Error}", appPid, e.Message);
                return 3;
            }
            Span<int> fds = stackalloc int[PagerProtocol.MaxFds];
            var pfd = stackalloc Libc.PollFd[3];
            while (true)
            {
                pfd[0] = new Libc.PollFd { Fd = channel.Socket.Fd, Events = Libc.POLLIN };
                pfd[1] = new Libc.PollFd { Fd = _appPidfd.Fd, Events = Libc.POLLIN };
                pfd[2] = new Libc.PollFd { Fd = _activePidfd?.Fd ?? -1, Events = Libc.POLLIN };
                int n = Libc.Poll(pfd, 3, -1);
                if (n < 0)
                {
                    if (Marshal.GetLastPInvokeError() == Errno.EINTR)
                    {
                        continue;
                    }
                    throw Libc.Error("poll in the pager's control loop");
                }
                if (pfd[1].Revents != 0)
                {
                    logger.LogDebug("application {Pid} exited; pager exits", appPid);
                    return 0;
                }
                if (pfd[2].Revents != 0)
                {
                    logger.LogWarning("the active pager exited; this standby takes over");
                    _activePidfd!.Dispose();
                    _activePidfd = null;
                    _faults?.Promote();
                }
                if (pfd[0].Revents == 0)
                {
                    continue;
                }
                int length = channel.Receive(_buffer, fds, out int fdCount, 0);
                if (length == -1)
                {
                    continue;
                }
                if (length == 0)
                {
                    logger.LogDebug("application closed the pager socket; pager exits");
                    return 0;
                }
                Handle(_buffer.AsSpan(0, length), fds[..fdCount]);
            }
        }

        private void Handle(ReadOnlySpan<byte> message, ReadOnlySpan<int> fds)
        {
            var owned = new List<FileDescriptor>(fds.Length);
            foreach (int fd in fds)
            {
                owned.Add(new FileDescriptor(fd));
            }
            ulong request = 0;
            try
            {
                var reader = new ProtocolReader(message);
                request = reader.RequestId;
                switch (reader.Type)
                {
                    case PagerProtocol.MessageType.Hello:
                        Hello(ref reader, owned);
                        break;
                    case PagerProtocol.MessageType.AddRegion:
                        AddRegion(ref reader, owned);
                        break;
                    case PagerProtocol.MessageType.RemoveRegion:
                        Faults.Remove(reader.U64());
                        break;
                    case PagerProtocol.MessageType.Prefetch:
                        {
                            ulong id = reader.U64();
                            long first = (long)reader.U64(), end = (long)reader.U64();
                            Faults.Prefetch(id, first, end);
                            break;
                        }
                    case PagerProtocol.MessageType.CancelPrefetch:
                        Faults.CancelPrefetch(reader.U64());
                        break;
                    case PagerProtocol.MessageType.Arm:
                        _activePidfd = Take(owned, 0, "the active pager's pidfd");
                        break;
                    default:
                        throw new PagerException($"unknown pager message type {(uint)reader.Type}");
                }
                Reply(request, 0, "");
            }
            catch (Exception e)
            {
                logger.LogError(e, "pager request failed");
                Reply(request, e is PagingSystemException s ? s.Errno : -1, e.Message);
            }
            finally
            {
                foreach (var fd in owned)
                {
                    fd.Dispose();
                }
            }
        }

        private FaultService Faults => _faults ?? throw new PagerException("the pager got a request before Hello");

        private static FileDescriptor Take(List<FileDescriptor> owned, int index, string what)
        {
            if (index >= owned.Count)
            {
                throw new PagerException($"the message did not carry {what}");
            }
            var fd = owned[index];
            owned[index] = new FileDescriptor(); // ownership moves to the caller
            return fd;
        }

        private void Hello(ref ProtocolReader reader, List<FileDescriptor> owned)
        {
            if (_faults is not null)
            {
                throw new PagerException("Hello sent twice");
            }
            var role = (PagerProtocol.Role)reader.U32();
            var features = (UffdFeatures)reader.U64();
            _uffd = new Userfaultfd(Take(owned, 0, "the userfaultfd"), features);
            _faults = new FaultService(_uffd.Fd, features, role == PagerProtocol.Role.Active, logger);
            logger.LogDebug("pager {Pid} serving application {App} as {Role}", Environment.ProcessId, appPid, role);
        }

        private void AddRegion(ref ProtocolReader reader, List<FileDescriptor> owned)
        {
            ulong id = reader.U64();
            var kind = (ArenaKind)reader.U32();
            int pageSize = (int)reader.U32();
            ulong address = reader.U64();
            ulong length = reader.U64();
            string storeKind = reader.Str(), assembly = reader.Str(), type = reader.Str();
            uint settingCount = reader.U32();
            if (settingCount > 1024)
            {
                throw new PagerException($"{settingCount} store settings is not a plausible number");
            }
            var settings = new Dictionary<string, string>(StringComparer.Ordinal);
            for (uint i = 0; i < settingCount; i++)
            {
                settings[reader.Str()] = reader.Str();
            }
            bool readAhead = reader.U32() != 0;
            long blockPages = (long)reader.U64(), maxWindowPages = (long)reader.U64();
            bool streamAll = reader.U32() != 0;
            if (blockPages < 1 || maxWindowPages < 1)
            {
                throw new PagerException($"region {id}: bad prefetch policy (block {blockPages} pages, window {maxWindowPages} pages)");
            }
            var policy = new RegionPolicy(readAhead, blockPages, maxWindowPages, streamAll);
            if (pageSize is not (4096 or 2 * 1024 * 1024) || length == 0 || length % (ulong)pageSize != 0 || address % (ulong)pageSize != 0)
            {
                throw new PagerException($"region {id}: bad geometry (page size {pageSize}, address 0x{address:x}, length {length})");
            }
            var descriptor = new PageStoreDescriptor(storeKind, settings, assembly.Length > 0 ? assembly : null, type.Length > 0 ? type : null);
            long pages = (long)(length / (ulong)pageSize);
            using var ctlFd = Take(owned, 0, "the region's control block");
            var control = RegionControlBlock.Attach(ctlFd.Fd, pages);
            Mapping? staging = null;
            IPageStore? store = null;
            FileDescriptor? memfd = null;
            try
            {
                if (kind != ArenaKind.Anonymous)
                {
                    memfd = Take(owned, 1, "the region's memfd");
                    staging = Mapping.Map((long)length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED | Libc.MAP_NORESERVE, memfd.Fd, 0,
                        "mmap of the staging mapping");
                }
                store = registry.Create(new PageStoreContext(descriptor, (long)length, pageSize));
                Faults.Add(new ServedRegion(id, kind, address, length, pageSize, control, staging, store, storeKind, policy, memfd));
                logger.LogDebug("region {Id}: {Kind} {Length} bytes at 0x{Address:x}, store {Store}", id, kind, length, address, descriptor);
            }
            catch
            {
                store?.Dispose();
                staging?.Dispose();
                memfd?.Dispose();
                control.Dispose();
                throw;
            }
        }

        private void Reply(ulong request, int status, string message)
        {
            var w = new ProtocolWriter(_reply, PagerProtocol.MessageType.Reply, request);
            w.I32(status);
            w.Str(message.Length > 4000 ? message[..4000] : message);
            try
            {
                channel.Send(w.Written, []);
            }
            catch (PagingSystemException e)
            {
                logger.LogWarning("could not answer the application: {Error}", e.Message);
            }
        }

        public void Dispose()
        {
            _faults?.Dispose();
            _uffd?.Dispose();
            _appPidfd?.Dispose();
            _activePidfd?.Dispose();
            channel.Dispose();
        }
    }
}
