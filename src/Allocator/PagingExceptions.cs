namespace Paging;

/// <summary>Base class of every error Paging raises.</summary>
public class PagingException : Exception
{
    /// <summary>Creates the exception.</summary>
    public PagingException(string message) : base(message) { }

    /// <summary>Creates the exception with its cause.</summary>
    public PagingException(string message, Exception? inner) : base(message, inner) { }
}

/// <summary>A system call failed; <see cref="Errno"/> is the kernel's error code.</summary>
public sealed class PagingSystemException : PagingException
{
    /// <summary>Creates the exception.</summary>
    public PagingSystemException(string message, Errno errno) : base(message) => Errno = errno;

    /// <summary>The errno of the failed call.</summary>
    public Errno Errno { get; }
}

/// <summary>The running kernel lacks a userfaultfd feature that the requested arena or operation needs.</summary>
public sealed class PagingFeatureNotSupportedException : PagingException
{
    /// <summary>Creates the exception.</summary>
    public PagingFeatureNotSupportedException(string message, UffdFeatures missing) : base(message) => Missing = missing;

    /// <summary>The features the kernel did not report.</summary>
    public UffdFeatures Missing { get; }
}

/// <summary>The pager process could not be started, refused a request, or did not answer.</summary>
public sealed class PagerException : PagingException
{
    /// <summary>Creates the exception.</summary>
    public PagerException(string message, Exception? inner = null) : base(message, inner) { }
}
