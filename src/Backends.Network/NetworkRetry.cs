using System.Globalization;
using Paging.Stores;

namespace Paging.Backends.Network;

/// <summary>
/// How a network store retries a request that failed transiently (a 5xx, 429, a reset connection, a truncated body, a
/// request that timed out): up to <see cref="Attempts"/> attempts, waiting a random time in [0, base × 2^k] before
/// attempt k+1 ("full jitter": many fills failing together do not retry in lock step). The engine retries a failed
/// fill again on top of this (three fill attempts), and the region's read deadline bounds the whole.
/// </summary>
/// <param name="Attempts">Attempts per request (1 = no retry).</param>
/// <param name="BaseDelay">The first backoff's upper bound.</param>
/// <param name="AttemptTimeout">How long one attempt may take before it is abandoned and retried.</param>
public sealed record NetworkRetry(int Attempts, TimeSpan BaseDelay, TimeSpan AttemptTimeout)
{
    /// <summary>4 attempts, 50 ms base (waits ≤ 50, 100, 200 ms), 10 s per attempt: a loopback or LAN server that
    /// restarts is retried across ~350 ms; the region's default 30 s deadline is never the first limit hit.</summary>
    public static NetworkRetry Default { get; } = new(4, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(10));

    /// <summary>The setting keys (shared by the network stores).</summary>
    public static class Settings
    {
        /// <summary>Attempts per request, 1–20.</summary>
        public const string Attempts = "retry_attempts";

        /// <summary>The first backoff's upper bound in milliseconds.</summary>
        public const string BaseDelayMilliseconds = "retry_base_ms";

        /// <summary>Milliseconds one attempt may take.</summary>
        public const string AttemptTimeoutMilliseconds = "attempt_timeout_ms";
    }

    /// <summary>Writes the policy into descriptor settings.</summary>
    internal void WriteTo(Dictionary<string, string> settings)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(Attempts, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Attempts, 20);
        ArgumentOutOfRangeException.ThrowIfLessThan(BaseDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(AttemptTimeout, TimeSpan.Zero);
        settings[Settings.Attempts] = Attempts.ToString(CultureInfo.InvariantCulture);
        settings[Settings.BaseDelayMilliseconds] = ((long)BaseDelay.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
        settings[Settings.AttemptTimeoutMilliseconds] = ((long)AttemptTimeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>Reads the policy from a store's settings (defaults for what is absent).</summary>
    internal static NetworkRetry From(PageStoreContext context) => new(
        (int)context.GetInt64(Settings.Attempts, Default.Attempts, min: 1, max: 20),
        TimeSpan.FromMilliseconds(context.GetInt64(Settings.BaseDelayMilliseconds, (long)Default.BaseDelay.TotalMilliseconds, min: 0, max: 60_000)),
        TimeSpan.FromMilliseconds(context.GetInt64(Settings.AttemptTimeoutMilliseconds, (long)Default.AttemptTimeout.TotalMilliseconds, min: 1, max: 3_600_000)));

    /// <summary>The wait before attempt <paramref name="attempt"/> + 1 after a failure whose server asked for
    /// <paramref name="retryAfter"/> (HTTP Retry-After): the longer of that and the backoff, but at most
    /// <see cref="AttemptTimeout"/> — a server that asks for minutes is tried again sooner rather than leaving the
    /// faulting threads to the region's read deadline without another attempt.</summary>
    internal TimeSpan Delay(int attempt, TimeSpan? retryAfter)
    {
        var backoff = Backoff(attempt);
        return retryAfter is { } asked && asked > backoff ? (asked < AttemptTimeout ? asked : AttemptTimeout) : backoff;
    }

    /// <summary>The wait before attempt <paramref name="attempt"/> + 1 (attempt counts from 1).</summary>
    internal TimeSpan Backoff(int attempt)
    {
        double cap = BaseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 16));
        return TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * cap);
    }
}
