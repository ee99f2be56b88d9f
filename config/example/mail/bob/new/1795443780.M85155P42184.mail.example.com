From: Emily Brooks <ebrooks@prairiefoods.example>
To: Bob Brown <bob@example.com>
Subject: Re: Samples
Date: Mon, 23 Nov 2026 08:23:00 -0600
Message-ID: <a0122208e406b3f0.77426@prairiefoods.example>
In-Reply-To: <fbf854d5ab496bfa.5507b@mail.example.com>
References: <fbf854d5ab496bfa.5507b@mail.example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Hi Bob,

Got the samples, thanks!

Thanks,
Emily
