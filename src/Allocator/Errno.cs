namespace Paging;

/// <summary>Linux error numbers the runtime meets (x86_64 and arm64 share these values). A
/// <see cref="PagingSystemException"/> carries one; <c>ToString()</c> gives the symbolic name.</summary>
#pragma warning disable CA1707, CA1712 // The kernel's own names: EPERM reads better than Eperm next to man pages.
public enum Errno
{
    /// <summary>No error.</summary>
    None = 0,
    /// <summary>Operation not permitted.</summary>
    EPERM = 1,
    /// <summary>No such file or directory (for uffd ioctls: the range is not registered).</summary>
    ENOENT = 2,
    /// <summary>No such process (the application exited).</summary>
    ESRCH = 3,
    /// <summary>Interrupted system call.</summary>
    EINTR = 4,
    /// <summary>I/O error.</summary>
    EIO = 5,
    /// <summary>Bad file descriptor.</summary>
    EBADF = 9,
    /// <summary>Try again (for uffd ioctls: the mm is changing).</summary>
    EAGAIN = 11,
    /// <summary>Out of memory.</summary>
    ENOMEM = 12,
    /// <summary>Permission denied.</summary>
    EACCES = 13,
    /// <summary>Bad address (for UFFDIO_CONTINUE: the page is not in the page cache).</summary>
    EFAULT = 14,
    /// <summary>Device or resource busy.</summary>
    EBUSY = 16,
    /// <summary>Exists (for uffd ioctls: the page is already mapped; not a failure).</summary>
    EEXIST = 17,
    /// <summary>Invalid argument.</summary>
    EINVAL = 22,
    /// <summary>Inappropriate ioctl for device.</summary>
    ENOTTY = 25,
    /// <summary>No space left on device (for uffd ioctls: the target process exited).</summary>
    ENOSPC = 28,
    /// <summary>Broken pipe (the other side exited).</summary>
    EPIPE = 32,
    /// <summary>Function not implemented (a kernel without the feature).</summary>
    ENOSYS = 38,
    /// <summary>Connection reset by peer.</summary>
    ECONNRESET = 104,
}
#pragma warning restore CA1707, CA1712
