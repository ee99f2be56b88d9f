From: Mail Delivery System <MAILER-DAEMON@mx01.mailrelay.example>
To: Alice Andersson <alice@example.com>
Subject: Undelivered Mail Returned to Sender
Date: Mon, 23 Nov 2026 11:47:00 +0000
Message-ID: <1088b6c360fc0a5e.5dd71@mx01.mailrelay.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="4F43539C53.bounce"

--4F43539C53.bounce
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx01.mailrelay.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<elin.aberg@acme-robotics.example>: host mx.acme-robotics.example said: 550 5.1.1 User unknown

--4F43539C53.bounce
Content-Type: message/delivery-status

Reporting-MTA: dns; mx01.mailrelay.example
Arrival-Date: Mon, 23 Nov 2026 11:45:00 +0000

Final-Recipient: rfc822; elin.aberg@acme-robotics.example
Original-Recipient: rfc822;elin.aberg@acme-robotics.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.acme-robotics.example
Diagnostic-Code: smtp; 550 5.1.1 <elin.aberg@acme-robotics.example>: Recipient address rejected: User unknown

--4F43539C53.bounce
Content-Type: text/rfc822-headers

From: Alice Andersson <alice@example.com>
To: =?utf-8?q?Elin_=C3=85berg?= <elin.aberg@acme-robotics.example>
Subject: Checking in, Elin
Date: Mon, 23 Nov 2026 12:45:00 +0100
Message-ID: <e7121b05b652c34f.f20c0@mail.example.com>

--4F43539C53.bounce--
