From: Kalle Svensson <kalle.svensson88@hotmail.com>
To: Alice Andersson <alice@example.com>
Subject: Job application: sales development
Date: Thu, 19 Nov 2026 08:12:00 +0100
Message-ID: <6827a344b613d041.1759a@hotmail.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Hi Alice,

Hello, I found your address online.

Thanks,
Kalle
